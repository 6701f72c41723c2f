// The service RPCs of AdminService: create, list, get, scale and remove services, and their client
// tokens. Merged into AdminService's handlers; every call needs the admin token (adminUnary).
import type { Clock } from '../common/clock.js';
import { echoValue } from '../common/echo-value.js';
import { NotFoundError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import {
  type AdminServiceServer, type CreateServiceRequest, type CreateServiceTokenRequest, type CreateServiceTokenResponse, type GetServiceRequest,
  type ListServicesRequest, type ListServicesResponse, type ListServiceTokensRequest, type ListServiceTokensResponse, type RemoveServiceRequest,
  type RevokeServiceTokenRequest, type ScaleServiceRequest, ServiceInfo, type ServiceTokenInfo,
} from '../protocol/gen/hivemind/v1/admin.js';
import { decodePageToken, pageSize, summarise, takePage } from './admin-listing.js';
import { adminUnary } from './admin-unary.js';
import type { MasterAuth } from './auth.js';
import type { TrafficView } from './gateway/gateway-directory.js';
import { InvalidArgumentError, ResourceExhaustedError } from './master-errors.js';
import type { ServiceManager } from './service-manager.js';
import { validateServiceName, validateTokenLabel } from './service-rules.js';
import { toServiceInfo } from './service-info.js';
import type { TaskRow } from './master-store.js';
import { MAX_TOKENS_PER_SERVICE, type ServiceStore, type ServiceTokenRow } from './service-store.js';
import { newServiceToken } from './service-tokens.js';

/** The gateway URL ServiceInfo.endpoint names when the master is given none. */

export interface ServiceAdminDeps {
  auth: MasterAuth;
  manager: ServiceManager;
  services: ServiceStore;
  clock: Clock;
  log: Logger;
  /** The gateway's public base URL (ServiceInfo.endpoint = it + /s/NAME/). */
  /** The gateway's base URL for ServiceInfo.endpoint (empty when no gateway runs). */
  gatewayUrl: () => string;
  /** The gateway's counters; absent: ServiceInfo carries no traffic. */
  traffic?: TrafficView;
  /** A queued replica with its current queue reason (TaskManager.withQueueReason); absent: the stored one. */
  withQueueReason?: (t: TaskRow) => TaskRow;
}

type ServiceHandlers = Pick<AdminServiceServer,
  'createService' | 'listServices' | 'getService' | 'scaleService' | 'removeService' | 'createServiceToken' | 'listServiceTokens' | 'revokeServiceToken'>;

export class ServiceAdmin {
  constructor(private readonly d: ServiceAdminDeps) {}

  handlers(): ServiceHandlers {
    const unary = <Req, Res>(fn: (req: Req) => Res) => adminUnary(this.d.auth, fn);
    return {
      createService: unary((r: CreateServiceRequest) => this.info(this.d.manager.create(r).name)),
      listServices: unary((r: ListServicesRequest) => this.list(r)),
      getService: unary((r: GetServiceRequest) => this.info(r.name)),
      scaleService: unary((r: ScaleServiceRequest) => this.info(this.d.manager.scale(r.name, r.replicas).name)),
      // The service may be gone at once (no replica was live): the answer is built from what it was.
      removeService: unary((r: RemoveServiceRequest) => {
        const s = this.d.manager.remove(r.name);
        return toServiceInfo(this.d.services.getService(s.name) ?? s, this.replicas(s.name), this.d.gatewayUrl(), this.d.traffic);
      }),
      createServiceToken: unary((r: CreateServiceTokenRequest) => this.createToken(r)),
      listServiceTokens: unary((r: ListServiceTokensRequest) => ({ tokens: this.d.services.tokensOf(this.d.manager.get(r.service).name).map(tokenInfo) }) satisfies ListServiceTokensResponse),
      revokeServiceToken: unary((r: RevokeServiceTokenRequest) => this.revokeToken(r)),
    };
  }

  private replicas(name: string): TaskRow[] {
    const tasks = this.d.manager.replicaTasks(name);
    const reason = this.d.withQueueReason;
    return reason ? tasks.map(reason) : tasks;
  }

  private info(name: string): ServiceInfo {
    const s = this.d.manager.get(name);
    return toServiceInfo(s, this.replicas(s.name), this.d.gatewayUrl(), this.d.traffic);
  }

  private list(r: ListServicesRequest): ListServicesResponse {
    const after = decodePageToken(r.pageToken);
    const page = takePage(this.d.services.iterateServices(after?.id), {
      limit: pageSize(r.limit),
      toItem: (s) => toServiceInfo(s, this.replicas(s.name), this.d.gatewayUrl(), this.d.traffic),
      sizeOf: (i) => ServiceInfo.encode(i).finish().length,
      summary: (i) => summarise(i).value,
      cursorOf: (s) => ({ at: 0, id: s.name }),
    });
    return { services: page.items, nextPageToken: page.next };
  }

  private createToken(r: CreateServiceTokenRequest): CreateServiceTokenResponse {
    const s = this.d.manager.get(validateServiceName(r.service));
    const label = validateTokenLabel(r.label);
    if (!Number.isSafeInteger(r.ttlMs) || r.ttlMs < 0) throw new InvalidArgumentError(`ttl_ms must be a whole number ≥ 0, got ${r.ttlMs}`);
    const now = this.d.clock.now();
    // A revoked or expired token makes room for a new one; live ones are never dropped.
    if (this.d.services.tokenCount(s.name) >= MAX_TOKENS_PER_SERVICE && !this.d.services.dropOldestDeadToken(s.name, now)) {
      throw new ResourceExhaustedError(`service ${s.name} has ${MAX_TOKENS_PER_SERVICE} live tokens, the most it may hold; revoke one (\`hivemind service token revoke\`) first`);
    }
    const fresh = newServiceToken();
    const row: ServiceTokenRow = { id: fresh.id, hash: fresh.hash, service: s.name, label, createdAt: now, expiresAt: r.ttlMs === 0 ? 0 : now + r.ttlMs, revoked: false, lastUsed: 0 };
    this.d.services.insertToken(row);
    this.d.log.info({ service: s.name, tokenId: row.id, label }, 'service token created');
    return { token: fresh.token, info: tokenInfo(row) };
  }

  private revokeToken(r: RevokeServiceTokenRequest): ServiceTokenInfo {
    const id = r.tokenId.trim().toLowerCase();
    if (!/^[0-9a-f]{12}$/.test(id)) throw new InvalidArgumentError(`token id "${echoValue(r.tokenId)}" is not 12 hex digits (see \`hivemind service token list\`)`);
    const t = this.d.services.getToken(id);
    if (!t) throw new NotFoundError(`no service token ${id}`);
    this.d.services.revokeToken(id);
    this.d.log.info({ service: t.service, tokenId: id }, 'service token revoked');
    return tokenInfo({ ...t, revoked: true });
  }
}

function tokenInfo(t: ServiceTokenRow): ServiceTokenInfo {
  return { tokenId: t.id, service: t.service, label: t.label, createdAtMs: t.createdAt, expiresAtMs: t.expiresAt, revoked: t.revoked, lastUsedMs: t.lastUsed };
}
