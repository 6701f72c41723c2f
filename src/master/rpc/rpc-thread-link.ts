// The main thread's end of one RPC thread: the Worker, its calls by id, and the frames between
// them. The server (threaded-server.ts) builds each call when it opens; this routes the rest.
import { Worker } from 'node:worker_threads';
import type { BridgedCall, CallLink } from './bridged-call.js';
import { FrameBatch } from './frame-batch.js';
import type { FromThread, RpcThreadData, ToThread } from './rpc-frames.js';
import { HivemindError } from '../../common/errors.js';
import { embeddedAsset, isStandalone } from '../../common/embedded-assets.js';
import type { LoopLag } from '../../common/loop-lag.js';

/** The asset key scripts/build-exe.ts stores the bundled thread under (the executable has no dist/). */
export const RPC_THREAD_ASSET = 'workers/rpc-thread.cjs';

export class RpcThreadError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('RPC_THREAD', message, options);
  }
}

export type OpenFrame = Extract<FromThread, { t: 'open' }>;

/**
 * The longest the main thread spends on the thread's frames before it lets the rest of its loop
 * run (timers, I/O, the other threads' frames): a burst of thousands of frames (a throughput peak
 * at 10,000 nodes) was one 200 ms turn of the loop when handled in one go.
 */
export const FRAME_SLICE_MS = 10;

export interface ThreadLag extends LoopLag {
  thread: number;
}

/**
 * The thread's young generation, MiB (V8's semi-spaces are a third of it). V8's default here
 * grows to 64 MiB semi-spaces, and each scavenge then copied the ~8 MB of call state alive at that
 * moment: 40-117 ms pauses at 10,000 nodes. With 8 MiB semi-spaces they are under 45 ms (more of
 * them, the same work in all).
 */
export const RPC_THREAD_YOUNG_GENERATION_MB = 24;

/** Starts the thread's script from dist, or from the executable's bundle. */
export function spawnRpcThread(data: RpcThreadData): Worker {
  const resourceLimits = { maxYoungGenerationSizeMb: RPC_THREAD_YOUNG_GENERATION_MB };
  if (!isStandalone()) return new Worker(new URL('./rpc-thread.js', import.meta.url), { workerData: data, resourceLimits });
  const code = embeddedAsset(RPC_THREAD_ASSET);
  if (!code) throw new RpcThreadError(`this executable carries no ${RPC_THREAD_ASSET}: rebuild it with npm run build:exe`);
  return new Worker(code.toString('utf8'), { eval: true, workerData: data, resourceLimits });
}

/** Frames in arrival order; taking the oldest is O(1) (a head index, the array compacted as it goes). */
class FrameFifo {
  private items: FromThread[] = [];
  private head = 0;

  get size(): number {
    return this.items.length - this.head;
  }

  push(f: FromThread): void {
    this.items.push(f);
  }

  shift(): FromThread | undefined {
    if (this.head >= this.items.length) return undefined;
    const f = this.items[this.head]!;
    this.items[this.head++] = undefined as unknown as FromThread;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head > 4096) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return f;
  }
}

export class RpcThreadLink implements CallLink {
  private readonly calls = new Map<number, BridgedCall>();
  private readonly lagWaiters = new Map<number, (l: ThreadLag) => void>();
  private nextToken = 1;
  private closed: Promise<void> | undefined;
  private exited = false;
  /** Frames received and not handled yet. */
  private readonly inbox = new FrameFifo();
  /** Frames of urgent calls (admin calls), handled before the others: an operator's page does not queue behind 10,000 nodes' traffic. */
  private readonly urgentInbox = new FrameFifo();
  private readonly urgentIds = new Set<number>();
  private drainQueued = false;
  private readonly outbox = new FrameBatch<ToThread>();
  private flushQueued = false;

  private constructor(
    readonly index: number,
    private readonly worker: Worker,
    private readonly onOpen: (link: RpcThreadLink, frame: OpenFrame) => void,
    private readonly urgent: (path: string) => boolean,
  ) {}

  /** Starts the thread and waits until it listens; returns it with the port it got. */
  static async start(
    data: RpcThreadData,
    spawn: (data: RpcThreadData) => Worker,
    onOpen: (link: RpcThreadLink, frame: OpenFrame) => void,
    onExit: (link: RpcThreadLink, why: string) => void,
    urgent: (path: string) => boolean = () => false,
  ): Promise<{ link: RpcThreadLink; port: number }> {
    const worker = spawn(data);
    const link = new RpcThreadLink(data.index, worker, onOpen, urgent);
    const port = await new Promise<number>((resolve, reject) => {
      const fail = (why: string, cause?: unknown) => {
        worker.off('message', first);
        void worker.terminate();
        reject(new RpcThreadError(`RPC thread ${data.index} cannot listen on ${data.host}:${data.port}: ${why}`, { cause }));
      };
      const first = (batch: FromThread[]) => {
        for (const f of batch) {
          if (f.t === 'listening') {
            worker.off('message', first).off('error', onError).off('exit', onEarlyExit);
            resolve(f.port);
          } else if (f.t === 'listenFailed') {
            worker.off('error', onError).off('exit', onEarlyExit);
            fail(f.message);
          }
        }
      };
      const onError = (err: Error) => fail(err.message, err);
      const onEarlyExit = (code: number) => fail(`the thread exited with code ${code}`);
      worker.on('message', first).once('error', onError).once('exit', onEarlyExit);
    });
    worker.on('message', (batch: FromThread[]) => link.receive(batch));
    let lastError = '';
    worker.on('error', (err) => (lastError = err.message));
    worker.once('exit', (code) => {
      link.exited = true;
      link.endAll();
      if (!link.closed) onExit(link, lastError || `exit code ${code}`);
    });
    return { link, port };
  }

  get openCalls(): number {
    return this.calls.size;
  }

  /** Queues a frame for the thread; the frames of one turn of the loop go as one message. */
  post(frame: ToThread): void {
    if (this.exited) return;
    this.outbox.push(frame);
    if (!this.flushQueued) {
      this.flushQueued = true;
      queueMicrotask(() => this.flush());
    }
  }

  private flush(): void {
    this.flushQueued = false;
    if (this.outbox.length === 0 || this.exited) return;
    const { frames, transfer } = this.outbox.take();
    this.worker.postMessage(frames, transfer);
  }

  private receive(batch: FromThread[]): void {
    for (const f of batch) {
      if (f.t === 'lag') {
        // Answered as it arrives: behind a backlog of calls' frames a /metrics scrape waited
        // for its slice (up to the ask's 1 s timeout), and the thread's lag read as unknown.
        this.onFrame(f);
        continue;
      }
      if (f.t === 'open' && this.urgent(f.path)) this.urgentIds.add(f.id);
      if ('id' in f && this.urgentIds.has(f.id)) {
        // A call's frames keep their order: all of them go this way, its end last.
        this.urgentInbox.push(f);
        if (f.t === 'cancel') this.urgentIds.delete(f.id);
      } else {
        this.inbox.push(f);
      }
    }
    if (!this.drainQueued) {
      this.drainQueued = true;
      setImmediate(() => this.drain());
    }
  }

  /** Handles queued frames, urgent ones first, for at most FRAME_SLICE_MS, then lets the loop turn if any are left. */
  private drain(): void {
    this.drainQueued = false;
    const until = performance.now() + FRAME_SLICE_MS;
    while (performance.now() < until) {
      const f = this.urgentInbox.shift() ?? this.inbox.shift();
      if (!f) return;
      this.onFrame(f);
    }
    if (this.urgentInbox.size === 0 && this.inbox.size === 0) return;
    this.drainQueued = true;
    setImmediate(() => this.drain());
  }

  /** Routes the thread's frames for `call` to it until it is over (before it is dispatched: a handler may answer at once). */
  track(call: BridgedCall): void {
    this.calls.set(call.id, call);
  }

  forget(id: number): void {
    this.calls.delete(id);
  }

  /** Event-loop delay of the thread since the previous ask; undefined when it does not answer within `timeoutMs`. */
  lag(timeoutMs = 1000): Promise<ThreadLag | undefined> {
    if (this.exited) return Promise.resolve(undefined);
    const token = this.nextToken++;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.lagWaiters.delete(token);
        resolve(undefined);
      }, timeoutMs);
      this.lagWaiters.set(token, (l) => {
        clearTimeout(t);
        resolve(l);
      });
      this.post({ t: 'lag', token });
    });
  }

  /** Stops the thread's listener, lets its calls finish for `graceMs`, cuts the rest and ends the thread. */
  close(graceMs: number): Promise<void> {
    this.closed ??= this.doClose(graceMs);
    return this.closed;
  }

  private async doClose(graceMs: number): Promise<void> {
    if (!this.exited) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, graceMs + 2000);
        const onClosed = (batch: FromThread[]) => {
          if (!batch.some((f) => f.t === 'closed')) return;
          clearTimeout(t);
          this.worker.off('message', onClosed);
          resolve();
        };
        this.worker.on('message', onClosed);
        this.worker.once('exit', () => {
          clearTimeout(t);
          resolve();
        });
        this.post({ t: 'close', graceMs });
      });
    }
    this.endAll();
    await this.worker.terminate();
  }

  private endAll(): void {
    const calls = [...this.calls.values()];
    this.calls.clear();
    for (const c of calls) c.over();
  }

  private onFrame(f: FromThread): void {
    switch (f.t) {
      case 'open':
        // A call whose thread is gone by now would never hear its end.
        if (!this.exited) this.onOpen(this, f);
        return;
      case 'message':
        this.calls.get(f.id)?.received(f.bytes);
        return;
      case 'halfClose':
        this.calls.get(f.id)?.halfClosed();
        return;
      case 'sent':
        this.calls.get(f.id)?.sent();
        return;
      case 'cancel': {
        const call = this.calls.get(f.id);
        this.calls.delete(f.id);
        call?.over();
        return;
      }
      case 'lag': {
        const w = this.lagWaiters.get(f.token);
        this.lagWaiters.delete(f.token);
        w?.({ thread: this.index, p50: f.p50, p99: f.p99, max: f.max });
        return;
      }
      default:
        return;
    }
  }
}
