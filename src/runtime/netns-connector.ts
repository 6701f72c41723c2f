// Reaches a port on a replica container's own loopback while the container has no network: a
// child process started inside its network namespace (nsenter -n) connects there and hands each
// connected socket back over IPC, so the worker holds a plain socket into the container and the
// port is never published. One connector per running container; it dies with the container or
// with the worker (it exits when its IPC channel closes).
import { spawn, type ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { isStandalone } from '../common/embedded-assets.js';
import { ReplicaUnreachableError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ConnectAnswer } from './netns-connector-child.js';

/** The hidden CLI subcommand the standalone executable runs as the connector's child. */
export const CONNECTOR_SUBCOMMAND = '__netns-connector';

/** How the child is run, after `nsenter -t PID -n --`: node and the script, or the standalone executable. */
export function connectorCommand(): string[] {
  if (isStandalone()) return [process.execPath, CONNECTOR_SUBCOMMAND];
  return [process.execPath, join(dirname(fileURLToPath(import.meta.url)), 'netns-connector-child.js')];
}

export interface NetnsConnectorOptions {
  /** The nsenter program. Default "nsenter" (util-linux). */
  nsenter?: string;
  /** The child's command; default connectorCommand(). */
  command?: string[];
  /** One connect (child start included) may take this long. Default 5 s. */
  connectTimeoutMs?: number;
  /** Connects waiting for their answer at once; more are refused. Default 256. */
  maxPending?: number;
}

/** Bytes of the child's stderr kept for the error message. */
const STDERR_KEEP = 2048;

interface Pending {
  resolve(sock: Socket): void;
  reject(err: Error): void;
}

export class NetnsConnector {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private stderr = '';
  /** Set once the child cannot serve any more: why. */
  private dead: string | undefined;
  private readonly ready: Promise<void>;
  private readonly timeoutMs: number;
  private readonly maxPending: number;

  private constructor(
    private readonly child: ChildProcess,
    readonly pid: number,
    opts: NetnsConnectorOptions,
    private readonly log: Logger,
  ) {
    this.timeoutMs = opts.connectTimeoutMs ?? 5_000;
    this.maxPending = opts.maxPending ?? 256;
    this.ready = new Promise<void>((resolve, reject) => {
      child.on('message', (msg: ConnectAnswer, handle?: unknown) => {
        if ('ready' in msg) return resolve();
        const p = this.pending.get(msg.id);
        if (!p) {
          (handle as Socket | undefined)?.destroy();
          return;
        }
        this.pending.delete(msg.id);
        if (msg.ok && handle) p.resolve(handle as Socket);
        else if (msg.ok) p.reject(new ReplicaUnreachableError('the connector answered without a connection'));
        else p.reject(new ReplicaUnreachableError(msg.code === 'ECONNREFUSED' ? 'connection refused: nothing listens on the port in the container (yet)' : `could not connect in the container: ${msg.message}`));
      });
      const fail = (why: string) => {
        this.dead ??= why;
        reject(new ReplicaUnreachableError(this.dead));
        for (const p of this.pending.values()) p.reject(new ReplicaUnreachableError(this.dead));
        this.pending.clear();
      };
      child.on('error', (err: NodeJS.ErrnoException) => {
        fail(err.code === 'ENOENT' ? `${opts.nsenter ?? 'nsenter'} is not installed on this node: services need nsenter (util-linux)` : `could not start the connector: ${errorMessage(err)}`);
      });
      child.on('exit', (code, sig) => {
        const said = this.stderr.trim().split('\n').slice(-3).join('; ');
        fail(said ? `could not enter the container's network namespace: ${said}` : `the connector into the container's network namespace ended (${sig ?? `code ${code}`})`);
      });
    });
    this.ready.catch(() => {}); // seen by connect()
    child.stderr?.on('data', (d: Buffer) => (this.stderr = (this.stderr + d.toString()).slice(-STDERR_KEEP)));
  }

  /** Starts a connector in the network namespace of process `pid` (the container's main process). */
  static start(pid: number, log: Logger, opts: NetnsConnectorOptions = {}): NetnsConnector {
    if (!Number.isInteger(pid) || pid <= 0) throw new ReplicaUnreachableError(`the container has no process (pid ${pid}): it is not running`);
    const [cmd, ...args] = opts.command ?? connectorCommand();
    const child = spawn(opts.nsenter ?? 'nsenter', ['-t', String(pid), '-n', '--', cmd!, ...args], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      // Not in the worker's process group: a ^C on the worker's terminal is the worker's to handle.
      detached: false,
      serialization: 'json',
    });
    return new NetnsConnector(child, pid, opts, log);
  }

  /** A connection to 127.0.0.1:`port` in the container's network namespace. */
  async connect(port: number, signal?: AbortSignal): Promise<Socket> {
    if (this.dead) throw new ReplicaUnreachableError(this.dead);
    if (this.pending.size >= this.maxPending) throw new ReplicaUnreachableError(`${this.maxPending} connections to the replica are being opened already`);
    const timeout = AbortSignal.timeout(this.timeoutMs);
    const stop = signal ? AbortSignal.any([signal, timeout]) : timeout;
    const id = this.nextId++;
    return new Promise<Socket>((resolve, reject) => {
      const onAbort = () => {
        if (!this.pending.delete(id)) return;
        reject(new ReplicaUnreachableError(timeout.aborted ? `no connection to the container within ${this.timeoutMs} ms` : 'connect aborted'));
      };
      stop.addEventListener('abort', onAbort, { once: true });
      this.pending.set(id, {
        resolve: (s) => {
          stop.removeEventListener('abort', onAbort);
          resolve(s);
        },
        reject: (e) => {
          stop.removeEventListener('abort', onAbort);
          reject(e);
        },
      });
      this.ready.then(
        () => {
          if (!this.pending.has(id)) return;
          this.child.send({ id, port }, (err) => {
            if (err) this.pending.get(id)?.reject(new ReplicaUnreachableError(`the connector is gone: ${err.message}`));
          });
        },
        () => {}, // fail() rejected every pending connect
      );
    });
  }

  /** Stops the child (the container stopped, or the replica ended). */
  close(): void {
    this.dead ??= 'the replica container stopped';
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    for (const p of this.pending.values()) p.reject(new ReplicaUnreachableError(this.dead));
    this.pending.clear();
    this.log.debug({ pid: this.pid }, 'netns connector closed');
  }
}

/**
 * Whether this node can reach replica ports: nsenter present and the right to enter a network
 * namespace (root, CAP_SYS_ADMIN). Checked by entering this process's own one. The worker offers
 * a gateway pipe only when this says ok.
 */
export function servicesSupported(nsenter = 'nsenter'): Promise<{ ok: boolean; reason?: string }> {
  return new Promise((resolve) => {
    let stderr = '';
    const child = spawn(nsenter, ['-t', String(process.pid), '-n', '--', 'true'], { stdio: ['ignore', 'ignore', 'pipe'], timeout: 10_000 });
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-STDERR_KEEP)));
    child.on('error', (err: NodeJS.ErrnoException) =>
      resolve({ ok: false, reason: err.code === 'ENOENT' ? `${nsenter} is not installed (util-linux): services need it to reach a replica's port` : `${nsenter} could not run: ${err.message}` }),
    );
    child.on('exit', (code) => {
      if (code === 0) resolve({ ok: true });
      else resolve({ ok: false, reason: `cannot enter a network namespace (services need root or CAP_SYS_ADMIN): ${stderr.trim() || `nsenter exited with code ${code}`}` });
    });
  });
}
