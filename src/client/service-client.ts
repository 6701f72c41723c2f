// The client of the master's service calls (create, list, get, scale, remove; the gateway's access
// tokens): promise wrappers over the AdminService stubs with readable errors, as AdminClient does
// for tasks. Listings are read page after page to the end.
import type { Metadata, ServiceError } from '@grpc/grpc-js';
import { echoValue } from '../common/echo-value.js';
import { AdminServiceChunkClient } from '../protocol/chunk-codec.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';
import {
  CreateServiceRequest, type AdminServiceClient, type CreateServiceTokenResponse, type ListServicesRequest, type ListServicesResponse,
  type ServiceInfo, type ServiceTokenInfo,
} from '../protocol/gen/hivemind/v1/admin.js';
import { MasterCallError, walkPages } from './admin-client.js';

/** The stub methods this client calls: the generated AdminServiceClient has them, and so can a test's fake. */
export type ServiceStub = Pick<
  AdminServiceClient,
  'createService' | 'listServices' | 'getService' | 'scaleService' | 'removeService' | 'createServiceToken' | 'listServiceTokens' | 'revokeServiceToken' | 'close'
>;

type UnaryMethod<Req, Res> = (req: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => unknown;

export class ServiceClient {
  private closed = false;

  constructor(private readonly stub: ServiceStub, private readonly md: Metadata) {}

  /** Creates the channel; the connection itself is made lazily on the first call. */
  static connect(address: string, adminToken: string, transport: Transport = insecureTransport): ServiceClient {
    return new ServiceClient(new AdminServiceChunkClient(address, transport.clientCredentials(), channelOptions), bearerMetadata(adminToken));
  }

  private unary<Req, Res>(what: string, method: UnaryMethod<Req, Res>, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.stub, req, this.md, (err, res) => (err ? reject(new MasterCallError(what, err)) : resolve(res)));
    });
  }

  create(req: Partial<CreateServiceRequest>): Promise<ServiceInfo> {
    const full = CreateServiceRequest.fromPartial(req);
    return this.unary(`create service ${echoValue(full.name)}`, this.stub.createService as UnaryMethod<CreateServiceRequest, ServiceInfo>, full);
  }

  /** One page of services by name; pass its nextPageToken back for the next. */
  listPage(req: Partial<ListServicesRequest> = {}): Promise<ListServicesResponse> {
    return this.unary('list services', this.stub.listServices as UnaryMethod<ListServicesRequest, ListServicesResponse>, { limit: 0, pageToken: '', ...req });
  }

  /** Every service, by name, page after page. */
  list(): Promise<ServiceInfo[]> {
    return walkPages(0, async (limit, pageToken) => {
      const r = await this.listPage({ limit, pageToken });
      return { items: r.services, next: r.nextPageToken };
    });
  }

  get(name: string): Promise<ServiceInfo> {
    return this.unary(`service ${echoValue(name)}`, this.stub.getService as UnaryMethod<{ name: string }, ServiceInfo>, { name });
  }

  scale(name: string, replicas: number): Promise<ServiceInfo> {
    return this.unary(`scale service ${echoValue(name)}`, this.stub.scaleService as UnaryMethod<{ name: string; replicas: number }, ServiceInfo>, { name, replicas });
  }

  remove(name: string): Promise<ServiceInfo> {
    return this.unary(`remove service ${echoValue(name)}`, this.stub.removeService as UnaryMethod<{ name: string }, ServiceInfo>, { name });
  }

  /** A gateway access token; its secret is in this answer only. `ttlMs` 0 = never expires. */
  createToken(service: string, opts: { label?: string; ttlMs?: number } = {}): Promise<CreateServiceTokenResponse> {
    return this.unary(
      `create a token for service ${echoValue(service)}`,
      this.stub.createServiceToken as UnaryMethod<{ service: string; label: string; ttlMs: number }, CreateServiceTokenResponse>,
      { service, label: opts.label ?? '', ttlMs: opts.ttlMs ?? 0 },
    );
  }

  /** The service's tokens, oldest first (the master keeps at most 1000 per service, in one answer). */
  async listTokens(service: string): Promise<ServiceTokenInfo[]> {
    const r = await this.unary(`tokens of service ${echoValue(service)}`, this.stub.listServiceTokens as UnaryMethod<{ service: string }, { tokens: ServiceTokenInfo[] }>, { service });
    return r.tokens;
  }

  revokeToken(tokenId: string): Promise<ServiceTokenInfo> {
    return this.unary(`revoke service token ${echoValue(tokenId)}`, this.stub.revokeServiceToken as UnaryMethod<{ tokenId: string }, ServiceTokenInfo>, { tokenId });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.stub.close();
  }
}
