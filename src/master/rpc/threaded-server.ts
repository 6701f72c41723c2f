// A gRPC server whose connections live in RPC threads (rpc-thread.ts) and whose handlers run on
// the main thread, unchanged: each call arrives as a BridgedCall, goes through the server's
// interceptors (metrics, the standby guard) and is dispatched to its handler as grpc-js would.
// With more than one thread they share the port (SO_REUSEPORT, Linux) and the kernel spreads the
// connections between them. A thread that dies is started again on the same port; its calls are
// cut, as a dropped connection's would be, and clients retry as they do after one.
import type { Worker } from 'node:worker_threads';
import { status as Status, type ServerInterceptingCallInterface, type ServerInterceptor, type ServerMethodDefinition, type ServiceDefinition, type UntypedHandleCall, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { parseHostPort } from '../../common/address.js';
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { BridgedCall, type CallCodec } from './bridged-call.js';
import { dispatch } from './call-dispatch.js';
import { fromWire, handlerKind, type HandlerKind, type RpcMethod, type RpcThreadData } from './rpc-frames.js';
import type { RpcServer } from './rpc-server.js';
import { RpcThreadError, RpcThreadLink, spawnRpcThread, type OpenFrame, type ThreadLag } from './rpc-thread-link.js';

/**
 * Calls open at once per RPC thread: 10,000 nodes hold about 12,000 (a Subscribe each, and the
 * calls of the moment). Each holds at most its read-ahead of messages on the main thread's side.
 */
export const MAX_OPEN_CALLS_PER_THREAD = 65_536;

/** How long a dead thread's replacement waits before it starts (and between tries). */
const RESTART_DELAY_MS = 500;

export interface ThreadedServerOptions {
  /** RPC threads. More than one only where SO_REUSEPORT exists (Linux); elsewhere one. */
  threads: number;
  /** Run on the main thread, around each call, in this order (as grpc-js ServerOptions.interceptors). */
  interceptors: readonly ServerInterceptor[];
  /** The largest message a call may send (RESOURCE_EXHAUSTED beyond, from its length prefix). */
  maxReceiveBytes: number;
  log: Logger;
  /** Messages of a client stream read ahead of its handler. Default 4. */
  readAhead?: number;
  /** Calls open at once per thread (RESOURCE_EXHAUSTED past it). Default MAX_OPEN_CALLS_PER_THREAD. */
  maxOpenCalls?: number;
  /** Default: spawnRpcThread (dist, or the executable's bundle). */
  spawn?: (data: RpcThreadData) => Worker;
  /** Calls whose frames the main thread handles before the others' (e.g. admin calls). Default: none. */
  urgent?: (path: string) => boolean;
}

interface Method extends RpcMethod {
  kind: HandlerKind;
  func: UntypedHandleCall;
  definition: ServerMethodDefinition<unknown, unknown>;
  codec: CallCodec;
}

export class ThreadedServer implements RpcServer {
  private readonly methods = new Map<string, Method>();
  private readonly links: (RpcThreadLink | undefined)[] = [];
  private bound: { host: string; port: number; reusePort: boolean } | undefined;
  private closing: Promise<void> | undefined;
  /** Threads being started (a dead one's replacement): close() waits for them, and they stop themselves. */
  private readonly starting = new Set<Promise<unknown>>();

  constructor(private readonly opts: ThreadedServerOptions) {}

  addService(service: ServiceDefinition, impl: UntypedServiceImplementation): void {
    if (this.bound) throw new Error('ThreadedServer: addService after listen');
    for (const [name, def] of Object.entries(service) as [string, ServerMethodDefinition<unknown, unknown>][]) {
      const kind = handlerKind(def);
      const func = impl[name] ?? (def.originalName ? impl[def.originalName] : undefined) ?? unimplemented(def.path, kind);
      this.methods.set(def.path, {
        path: def.path, requestStream: def.requestStream, responseStream: def.responseStream, kind, func, definition: def,
        codec: { serialize: (v) => def.responseSerialize(v), deserialize: (b) => def.requestDeserialize(b), responseStream: def.responseStream },
      });
    }
  }

  async listen(address: string): Promise<number> {
    if (this.bound) return this.bound.port;
    const hp = parseHostPort(address);
    if (hp?.port === undefined) throw new ConfigError(`master: listen address "${address}" is not host:port`);
    const wanted = Math.max(1, Math.floor(this.opts.threads));
    const reusePort = wanted > 1 && process.platform === 'linux';
    const count = reusePort ? wanted : 1;
    let port = hp.port;
    for (let i = 0; i < count; i++) {
      try {
        const started = await this.startThread(i, hp.host, port, reusePort);
        port = started;
      } catch (err) {
        await Promise.all(this.links.map((l) => l?.close(0)));
        this.links.length = 0;
        throw new ConfigError(`master: cannot listen on ${address}: ${errorMessage(err)}`, { cause: err });
      }
    }
    this.bound = { host: hp.host, port, reusePort };
    return port;
  }

  close(graceMs: number): Promise<void> {
    this.closing ??= (async () => {
      await Promise.all(this.links.map((l) => l?.close(graceMs)));
      await Promise.allSettled([...this.starting]);
    })();
    return this.closing;
  }

  async threadLag(): Promise<ThreadLag[]> {
    const all = await Promise.all(this.links.map((l) => l?.lag()));
    return all.filter((l): l is ThreadLag => l !== undefined);
  }

  /** Calls open on the main thread's side, all threads together (tests, diagnostics). */
  get openCalls(): number {
    return this.links.reduce((n, l) => n + (l?.openCalls ?? 0), 0);
  }

  private async startThread(index: number, host: string, port: number, reusePort: boolean): Promise<number> {
    const data: RpcThreadData = {
      index, host, port, reusePort,
      methods: [...this.methods.values()].map(({ path, requestStream, responseStream }) => ({ path, requestStream, responseStream })),
      maxReceiveBytes: this.opts.maxReceiveBytes,
      readAhead: this.opts.readAhead ?? 4,
      maxOpenCalls: this.opts.maxOpenCalls ?? MAX_OPEN_CALLS_PER_THREAD,
    };
    const started = RpcThreadLink.start(data, this.opts.spawn ?? spawnRpcThread, (l, f) => this.onOpen(l, f), (l, why) => this.onExit(l, why), this.opts.urgent).then(async (r) => {
      // close() ran while this thread started: it did not see it, so it stops here.
      if (this.closing) {
        await r.link.close(0);
        throw new RpcThreadError(`RPC thread ${index}: the server closed while it started`);
      }
      return r;
    });
    this.starting.add(started);
    try {
      const { link, port: got } = await started;
      this.links[index] = link;
      return got;
    } finally {
      this.starting.delete(started);
    }
  }

  private onOpen(link: RpcThreadLink, f: OpenFrame): void {
    const m = this.methods.get(f.path);
    const codec: CallCodec = m?.codec ?? { serialize: () => Buffer.alloc(0), deserialize: (b) => b, responseStream: false };
    let call: BridgedCall;
    try {
      call = new BridgedCall(link, codec, { id: f.id, metadata: fromWire(f.metadata), peer: f.peer, host: f.host, deadline: f.deadline, connection: f.connection });
    } catch (err) {
      link.post({ t: 'status', id: f.id, code: Status.INTERNAL, details: `unreadable call metadata: ${errorMessage(err)}`, metadata: null });
      return;
    }
    link.track(call);
    if (!m) {
      call.sendStatus({ code: Status.UNIMPLEMENTED, details: `The server does not implement the method ${f.path}`, metadata: null });
      return;
    }
    const outer = this.opts.interceptors.reduce<ServerInterceptingCallInterface>((c, i) => i(m.definition, c), call);
    dispatch(outer, m);
  }

  private onExit(link: RpcThreadLink, why: string): void {
    if (this.closing || !this.bound) return;
    this.opts.log.error({ thread: link.index, err: why }, 'an RPC thread stopped: its calls were cut; starting it again');
    this.links[link.index] = undefined;
    const { host, port, reusePort } = this.bound;
    const retry = () => {
      if (this.closing) return;
      this.startThread(link.index, host, port, reusePort).then(
        () => this.opts.log.info({ thread: link.index, port }, 'RPC thread started again'),
        (err: unknown) => {
          if (this.closing) return;
          this.opts.log.error({ thread: link.index, err: errorMessage(err) }, 'starting the RPC thread again failed; trying again');
          setTimeout(retry, RESTART_DELAY_MS).unref();
        },
      );
    };
    setTimeout(retry, RESTART_DELAY_MS).unref();
  }
}

/** What grpc-js answers for a method of an added service that was given no handler. */
function unimplemented(path: string, kind: HandlerKind): UntypedHandleCall {
  const err = { code: Status.UNIMPLEMENTED, details: `The server does not implement the method ${path}` };
  if (kind === 'unary' || kind === 'clientStream') return ((_call: unknown, cb: (e: unknown) => void) => cb(err)) as UntypedHandleCall;
  return ((call: { emit(e: string, v: unknown): void }) => call.emit('error', err)) as UntypedHandleCall;
}
