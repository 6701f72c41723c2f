// The node's end of the gateway pipe (protocol/gateway-pipe.ts): a TCP listener the master's
// gateway dials, one connection per replica connection. It reads the hello line, checks the key
// and the caller, asks the executor for a connection to the replica's port and then relays bytes
// both ways. Everything before the key matched is hostile until proven otherwise: bounded (line
// size, hello time, concurrent connections, new connections per second) and answered with nothing.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { pipeline } from 'node:stream';
import type { Duplex } from 'node:stream';
import type { Clock } from '../common/clock.js';
import { HivemindError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { unmapIPv4 } from '../common/address.js';
import type { GatewayPipeCounters, PipeRefusal, ReplicaPipeCounters } from './contracts.js';
import { PIPE_HELLO_TIMEOUT_MS, PIPE_MAX_LINE_BYTES, PIPE_OK, formatPipeError, parsePipeHello, pipeKeyMatches } from '../protocol/gateway-pipe.js';

/** Concurrent pipe connections (relaying or still in their hello); more are closed at once. */
export const PIPE_MAX_CONNECTIONS = 4096;
/** New connections taken per second; the rest of that second's are closed at once. */
export const PIPE_MAX_NEW_PER_SECOND = 1000;
/**
 * Replica attempts whose counters are kept. Replicas that end are replaced by new tasks, so the map
 * would otherwise grow over the worker's life; idle ones (nothing open) are forgotten first, least
 * recently used first.
 */
export const PIPE_MAX_TRACKED_REPLICAS = 256;
/** After an ERR answer, the caller has this long to close before the node does. */
const ERR_LINGER_MS = 2_000;
/** Refusals without an answer are logged at most this often (with the count since the last log). */
const REFUSAL_LOG_INTERVAL_MS = 60_000;

export class GatewayPipeListenError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATEWAY_PIPE_LISTEN', message, options);
  }
}

export type { GatewayPipeCounters, PipeRefusal, ReplicaPipeCounters } from './contracts.js';

export interface GatewayPipeServerOptions {
  /** The node's tunnel address, or 127.0.0.1 for a node without a tunnel. */
  host: string;
  /** 0 = a free port. */
  port: number;
  /** The only address that may call (the master's tunnel address); undefined: any that reaches `host`. */
  allowedRemote?: string | undefined;
  /** 64 hex digits; default: 32 random bytes, new each start. */
  key?: string;
  maxConnections?: number;
  maxNewPerSecond?: number;
  helloTimeoutMs?: number;
  /** Replica attempts whose counters are kept (default PIPE_MAX_TRACKED_REPLICAS). */
  maxTrackedReplicas?: number;
}

export interface GatewayPipeServerDeps {
  /** Whether the attempt is a service replica running on this node now (and not being stopped). */
  isReplica(taskId: string, attempt: number): boolean;
  /** A new connection to the replica's port (TaskExecutor.connect). */
  connect(taskId: string, attempt: number, signal: AbortSignal): Promise<Duplex>;
  clock: Clock;
  logger: Logger;
}

/** A socket's peer address with a v4-mapped v6 address as plain IPv4 ('' when unknown). */
export function plainAddress(address: string | undefined): string {
  return address ? unmapIPv4(address) : '';
}

export class GatewayPipeServer {
  readonly key: string;
  private readonly server: net.Server;
  private readonly sockets = new Set<net.Socket>();
  private readonly stopping = new AbortController();
  private readonly log: Logger;
  private readonly maxConnections: number;
  private readonly maxNewPerSecond: number;
  private readonly helloTimeoutMs: number;
  private readonly maxTrackedReplicas: number;
  private readonly allowedRemote: string | undefined;
  private windowStart = 0;
  private windowCount = 0;
  private lastRefusalLogAt = -Infinity;
  private refusalsSinceLog = 0;
  private closed: Promise<void> | undefined;
  private readonly stats: Omit<GatewayPipeCounters, 'replicas'> = { open: 0, relayed: 0, errors: 0, refused: { source: 0, key: 0, malformed: 0, timeout: 0, 'over-limit': 0 } };
  /** Per replica attempt, in least recently used order (a Map keeps insertion order). */
  private readonly perReplica = new Map<string, ReplicaPipeCounters>();

  constructor(
    private readonly opts: GatewayPipeServerOptions,
    private readonly deps: GatewayPipeServerDeps,
  ) {
    this.key = opts.key ?? randomBytes(32).toString('hex');
    this.maxConnections = opts.maxConnections ?? PIPE_MAX_CONNECTIONS;
    this.maxNewPerSecond = opts.maxNewPerSecond ?? PIPE_MAX_NEW_PER_SECOND;
    this.helloTimeoutMs = opts.helloTimeoutMs ?? PIPE_HELLO_TIMEOUT_MS;
    this.maxTrackedReplicas = opts.maxTrackedReplicas ?? PIPE_MAX_TRACKED_REPLICAS;
    this.allowedRemote = opts.allowedRemote === undefined ? undefined : plainAddress(opts.allowedRemote);
    this.log = deps.logger.child({ component: 'gateway-pipe' });
    this.server = net.createServer({ noDelay: true }, (socket) => this.onConnection(socket));
  }

  /** Starts listening; rejects with GatewayPipeListenError (port in use, address not on this host). */
  async listen(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        const why = err.code === 'EADDRINUSE' ? 'the port is in use (another worker on this host? set --gateway-port)' : err.code === 'EADDRNOTAVAIL' ? 'the address is not on this host' : errorMessage(err);
        reject(new GatewayPipeListenError(`cannot listen for the gateway pipe on ${this.opts.host}:${this.opts.port}: ${why}`, { cause: err }));
      };
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.host, port: this.opts.port, exclusive: true }, () => {
        this.server.off('error', onError);
        resolve();
      });
    });
    this.server.on('error', (err) => this.log.error({ err: errorMessage(err) }, 'gateway pipe listener failed'));
    this.log.info({ host: this.opts.host, port: this.port, allowedRemote: this.allowedRemote ?? 'any' }, 'gateway pipe listening');
  }

  get listening(): boolean {
    return this.server.listening;
  }

  /** The port listened on (the one picked when the option was 0). */
  get port(): number {
    const a = this.server.address();
    return a && typeof a === 'object' ? a.port : this.opts.port;
  }

  counters(): GatewayPipeCounters {
    return { ...this.stats, refused: { ...this.stats.refused }, replicas: [...this.perReplica.values()].map((r) => ({ ...r })) };
  }

  /** Idempotent: stops listening, aborts pending connects and cuts every pipe. */
  close(): Promise<void> {
    this.closed ??= new Promise<void>((resolve) => {
      this.stopping.abort();
      for (const s of this.sockets) s.destroy();
      if (!this.server.listening) return resolve();
      this.server.close(() => resolve());
    });
    return this.closed;
  }

  private onConnection(socket: net.Socket): void {
    if (this.stopping.signal.aborted) return void socket.destroy();
    socket.on('error', () => undefined);
    const now = this.deps.clock.now();
    if (now - this.windowStart >= 1_000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    this.windowCount++;
    if (this.sockets.size >= this.maxConnections || this.windowCount > this.maxNewPerSecond) return this.refuse(socket, 'over-limit');
    if (this.allowedRemote !== undefined && plainAddress(socket.remoteAddress) !== this.allowedRemote) return this.refuse(socket, 'source');
    this.sockets.add(socket);
    socket.once('close', () => this.sockets.delete(socket));
    this.readHello(socket);
  }

  /** Reads up to the first newline, within PIPE_MAX_LINE_BYTES and the hello timeout. */
  private readHello(socket: net.Socket): void {
    const chunks: Buffer[] = [];
    let size = 0;
    const timer = setTimeout(() => {
      cleanup();
      this.refuse(socket, 'timeout');
    }, this.helloTimeoutMs);
    const onData = (chunk: Buffer) => {
      const nl = chunk.indexOf(0x0a);
      const upTo = nl === -1 ? chunk.length : nl;
      if (size + upTo > PIPE_MAX_LINE_BYTES) {
        cleanup();
        return this.refuse(socket, 'malformed');
      }
      if (nl === -1) {
        chunks.push(chunk);
        size += chunk.length;
        return;
      }
      cleanup();
      socket.pause();
      chunks.push(chunk.subarray(0, nl));
      // Bytes the caller sent right after its hello belong to the replica: put back for the relay.
      const rest = chunk.subarray(nl + 1);
      if (rest.length > 0) socket.unshift(rest);
      this.onHello(socket, Buffer.concat(chunks).toString('latin1').replace(/\r$/, ''));
    };
    const onEnd = () => {
      cleanup();
      this.refuse(socket, 'malformed');
    };
    const cleanup = () => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
    };
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', () => clearTimeout(timer));
  }

  private onHello(socket: net.Socket, line: string): void {
    const hello = parsePipeHello(line);
    if ('error' in hello) return this.refuse(socket, 'malformed');
    if (!pipeKeyMatches(hello.key, this.key)) return this.refuse(socket, 'key');
    const { taskId, attempt } = hello;
    if (!this.deps.isReplica(taskId, attempt)) return this.answerError(socket, `replica ${taskId}#${attempt} is not running on this node`);
    // The caller hanging up (or the node closing) abandons the connect.
    const abandon = new AbortController();
    const onGone = () => abandon.abort();
    socket.once('close', onGone);
    const onStop = () => abandon.abort();
    this.stopping.signal.addEventListener('abort', onStop, { once: true });
    this.deps.connect(taskId, attempt, AbortSignal.any([abandon.signal, this.stopping.signal])).then(
      (upstream) => {
        socket.off('close', onGone);
        this.stopping.signal.removeEventListener('abort', onStop);
        if (abandon.signal.aborted || socket.destroyed) return void upstream.destroy();
        this.relay(socket, upstream, taskId, attempt);
      },
      (err: unknown) => {
        socket.off('close', onGone);
        this.stopping.signal.removeEventListener('abort', onStop);
        if (socket.destroyed) return;
        this.answerError(socket, errorMessage(err));
      },
    );
  }

  /** OK, then bytes both ways with backpressure; either end's close or error ends both. */
  private relay(socket: net.Socket, upstream: Duplex, taskId: string, attempt: number): void {
    this.stats.relayed++;
    this.stats.open++;
    const replica = this.replicaCounters(taskId, attempt);
    replica.connections++;
    replica.open++;
    socket.write(PIPE_OK);
    // pipeline resumes the socket paused since its hello: nothing it held back is lost.
    pipeline(socket, upstream, socket, (err) => {
      this.stats.open--;
      replica.open--;
      if (err && !isPeerGone(err)) this.log.debug({ taskId, attempt, err: errorMessage(err) }, 'gateway pipe ended with an error');
      socket.destroy();
      upstream.destroy();
    });
    // Listened to after pipeline() made both flow, so counting changes nothing in their backpressure.
    socket.on('data', (chunk: Buffer) => (replica.bytesIn += chunk.length));
    upstream.on('data', (chunk: Buffer) => (replica.bytesOut += chunk.length));
  }

  /** The attempt's counters, made the most recently used; past the bound an idle one is forgotten. */
  private replicaCounters(taskId: string, attempt: number): ReplicaPipeCounters {
    const k = `${taskId}#${attempt}`;
    let c = this.perReplica.get(k);
    if (c) this.perReplica.delete(k);
    else c = { taskId, attempt, connections: 0, open: 0, bytesIn: 0, bytesOut: 0 };
    this.perReplica.set(k, c);
    if (this.perReplica.size > this.maxTrackedReplicas) {
      for (const [key, r] of this.perReplica) {
        if (this.perReplica.size <= this.maxTrackedReplicas) break;
        if (r.open === 0 && r !== c) this.perReplica.delete(key);
      }
    }
    return c;
  }

  private answerError(socket: net.Socket, reason: string): void {
    this.stats.errors++;
    socket.end(formatPipeError(reason));
    setTimeout(() => socket.destroy(), ERR_LINGER_MS).unref();
  }

  /** Closed without a word: a caller that is not the master learns nothing, not even the protocol. */
  private refuse(socket: net.Socket, why: PipeRefusal): void {
    this.stats.refused[why]++;
    this.refusalsSinceLog++;
    const remote = plainAddress(socket.remoteAddress);
    socket.destroy();
    const now = this.deps.clock.now();
    if (now - this.lastRefusalLogAt >= REFUSAL_LOG_INTERVAL_MS) {
      this.log.warn({ why, remote, refusedSinceLastLog: this.refusalsSinceLog, refused: this.stats.refused }, 'gateway pipe: closed a connection that is not the master (logged once a minute)');
      this.lastRefusalLogAt = now;
      this.refusalsSinceLog = 0;
    }
  }
}

function isPeerGone(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE' || err.code === 'ERR_STREAM_PREMATURE_CLOSE';
}
