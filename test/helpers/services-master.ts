// A real Master (gRPC, SQLite, the service manager reconciling every 100 ms) for the services'
// integration tests, with an admin client and the raw AdminService stub for the service RPCs.
import type { TestContext } from 'node:test';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { AdminClient } from '../../src/client/admin-client.js';
import { Master } from '../../src/master/master.js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { AdminServiceChunkClient } from '../../src/protocol/chunk-codec.js';
import type { AdminServiceClient } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { masterStoreOption } from './test-store.js';

export interface ServicesMaster {
  master: Master;
  admin: AdminClient;
  svc: AdminServiceClient;
  md: Metadata;
  address: string;
}

/** Started, and closed (with its data dir removed) after the test. */
export async function startServicesMaster(t: TestContext): Promise<ServicesMaster> {
  const dataDir = await mkdtemp(join(tmpdir(), 'hm-services-'));
  const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, gatewayUrl: 'https://gw.example', serviceReconcileIntervalMs: 100, ...masterStoreOption() });
  const address = await master.start();
  const token = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const admin = AdminClient.connect(address, token);
  const svc = new AdminServiceChunkClient(address, credentials.createInsecure());
  t.after(async () => {
    svc.close();
    admin.close();
    await master.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return { master, admin, svc, md: bearerMetadata(token), address };
}

/** One AdminService call with the admin token (or `md`). */
export function callAdmin<Req, Res>(h: ServicesMaster, method: keyof AdminServiceClient, req: Req, md = h.md): Promise<Res> {
  return new Promise((resolve, reject) => {
    (h.svc[method] as unknown as (r: Req, m: Metadata, cb: (e: ServiceError | null, r: Res) => void) => void).call(h.svc, req, md, (e, r) => (e ? reject(e) : resolve(r)));
  });
}
