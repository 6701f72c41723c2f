// A stand-in for a standby master (the agreed contract of issue 21): a gRPC server on loopback
// that answers every call of every service (node, admin, data, enroll) with UNAVAILABLE
// "standby master: <holder> is active", and counts the calls it got.
import { Server, ServerCredentials, status, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { AdminServiceService } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { DataServiceService } from '../../src/protocol/gen/hivemind/v1/data.js';
import { EnrollServiceService } from '../../src/protocol/gen/hivemind/v1/enroll.js';
import { NodeServiceService } from '../../src/protocol/gen/hivemind/v1/node.js';

export class FakeStandbyMaster {
  calls = 0;
  private constructor(private readonly server: Server, readonly address: string) {}

  static async start(holder = 'the other master'): Promise<FakeStandbyMaster> {
    const server = new Server();
    let self!: FakeStandbyMaster;
    const refuse = { code: status.UNAVAILABLE, details: `standby master: ${holder} is active` };
    for (const def of [AdminServiceService, DataServiceService, EnrollServiceService, NodeServiceService] as unknown as ServiceDefinition[]) {
      const impl: UntypedServiceImplementation = {};
      for (const [name, m] of Object.entries(def)) {
        impl[name] = (call: { destroy?(e: Error): void; emit?(ev: string, e: unknown): void }, cb?: (e: unknown) => void) => {
          self.calls++;
          // Unary and client-streaming calls answer through the callback; the others end the stream with the status.
          if (!m.responseStream && cb) return cb(refuse);
          call.emit!('error', refuse);
        };
      }
      server.addService(def, impl);
    }
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
    );
    self = new FakeStandbyMaster(server, `127.0.0.1:${port}`);
    return self;
  }

  close(): void {
    this.server.forceShutdown();
  }
}
