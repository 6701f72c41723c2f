// The gateway's view of services (GatewayDirectory) over the service store and the node registry:
// a service's replicas with their health, whether a client token admits a request, and where a
// node's gateway pipe is. Read per request; token use is written at most once a minute per token.
import type { Clock } from '../common/clock.js';
import { TaskState } from '../protocol/gen/hivemind/v1/common.js';
import { isTerminal } from './store-rows.js';
import type { GatewayDirectory, GatewayService, NodePipeAddress } from './gateway/gateway-directory.js';
import type { NodeRegistry } from './registry.js';
import type { ServiceStore } from './service-store.js';
import { serviceTokenHash } from './service-tokens.js';

/** last_used is a hint for the operator: one write a minute per token, not one per request. */
export const TOKEN_USE_WRITE_INTERVAL_MS = 60_000;

export class ServiceDirectory implements GatewayDirectory {
  private readonly written = new Map<string, number>();

  constructor(
    private readonly services: Pick<ServiceStore, 'getService' | 'liveReplicaTasks' | 'tokenByHash' | 'touchToken'>,
    private readonly registry: Pick<NodeRegistry, 'gatewayOf'>,
    private readonly clock: Clock,
  ) {}

  service(name: string): GatewayService | undefined {
    const s = this.services.getService(name);
    if (!s) return undefined;
    const replicas = this.services.liveReplicaTasks(name)
      .filter((t) => t.nodeId !== null && !isTerminal(t.state) && !t.cancelRequested)
      .map((t) => ({
        index: t.spec.service!.replica,
        taskId: t.id,
        attempt: t.attempt,
        nodeId: t.nodeId!,
        healthy: t.state === TaskState.TASK_STATE_RUNNING && (t.replicaStatus?.healthy ?? false),
      }));
    return { name: s.name, public: s.public, replicas };
  }

  tokenAllows(service: string, token: string): boolean {
    const hash = serviceTokenHash(token);
    if (!hash) return false;
    const t = this.services.tokenByHash(hash);
    const now = this.clock.now();
    if (!t || t.service !== service || t.revoked || (t.expiresAt !== 0 && t.expiresAt <= now)) return false;
    const last = this.written.get(t.id) ?? t.lastUsed;
    if (now - last >= TOKEN_USE_WRITE_INTERVAL_MS || last === 0) {
      this.services.touchToken(t.id, now);
      this.written.set(t.id, now);
    }
    return true;
  }

  pipeOf(nodeId: string): NodePipeAddress | undefined {
    return this.registry.gatewayOf(nodeId);
  }
}
