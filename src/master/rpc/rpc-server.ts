// A gRPC server of the master, as the master uses one: services added, then listening, then
// closed with a grace period. Two kinds: a grpc-js Server on the main thread (InProcessServer),
// and ThreadedServer, whose connections live in threads of their own (threaded-server.ts).
import { Server, ServerCredentials, type ServerOptions, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { widenServerWindows } from '../../protocol/flow-control.js';
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { ThreadLag } from './rpc-thread-link.js';

export interface RpcServer {
  addService(service: ServiceDefinition, impl: UntypedServiceImplementation): void;
  /** Listens on host:port (port 0: any free one) and serves; returns the port. Throws ConfigError when it cannot. */
  listen(address: string): Promise<number>;
  /** Stops taking calls, lets open ones end for `graceMs` (0: none), then cuts the rest. Idempotent. */
  close(graceMs: number): Promise<void>;
  /** Event-loop delay of the threads serving the calls since the previous ask; [] when the calls are served on the main thread. */
  threadLag(): Promise<ThreadLag[]>;
}

export class InProcessServer implements RpcServer {
  private readonly server: Server;
  private closing: Promise<void> | undefined;

  constructor(
    options: ServerOptions,
    private readonly credentials: () => ServerCredentials,
    private readonly log: Logger,
  ) {
    this.server = new Server(options);
  }

  addService(service: ServiceDefinition, impl: UntypedServiceImplementation): void {
    this.server.addService(service, impl);
  }

  async listen(address: string): Promise<number> {
    const port = await new Promise<number>((resolve, reject) => this.server.bindAsync(address, this.credentials(), (err, p) => (err ? reject(err) : resolve(p)))).catch((err: unknown) => {
      throw new ConfigError(`master: cannot listen on ${address}: ${errorMessage(err)}`, { cause: err });
    });
    if (!widenServerWindows(this.server)) this.log.warn('cannot widen HTTP/2 windows on this grpc-js version; large transfers will be slower');
    return port;
  }

  close(graceMs: number): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      if (graceMs <= 0) {
        this.server.forceShutdown();
        resolve();
        return;
      }
      const cut = setTimeout(() => {
        this.server.forceShutdown();
        resolve();
      }, graceMs);
      cut.unref();
      this.server.tryShutdown(() => {
        clearTimeout(cut);
        resolve();
      });
    });
    return this.closing;
  }

  threadLag(): Promise<ThreadLag[]> {
    return Promise.resolve([]);
  }
}
