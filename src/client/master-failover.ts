// A CLI command's streams that outlive their master: with several masters configured, a watch, a
// followed log or a call that loses its master (killed: UNAVAILABLE; stepped down: UNAVAILABLE
// "standby master: …") picks the active master again, with a bounded backoff (failover-policy.ts),
// and goes on where it stopped: a log from the byte already printed (log-resume.ts), a watch from
// the task's state as the new master has it. With one master nothing moves: the error is the
// caller's, as before. The masters, the probe, the connection and the clock are injected.
import { status } from '@grpc/grpc-js';
import type { AdminClient } from './admin-client.js';
import { NoActiveMasterError } from './active-master.js';
import { DEFAULT_FAILOVER, FailoverExhaustedError, isMasterLoss, retryDelay, type FailoverPolicy } from './failover-policy.js';
import { LogResume } from './log-resume.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { echoValue } from '../common/echo-value.js';
import { AbortedError, HivemindError } from '../common/errors.js';
import type { LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import type { TaskInfo } from '../protocol/gen/hivemind/v1/admin.js';

/** What following a task needs of one master's client. */
export type FollowClient = Pick<AdminClient, 'streamLogs' | 'watchTask' | 'getTask' | 'cancelTask' | 'close'>;

export interface FailoverDeps<C extends FollowClient> {
  masters: readonly string[];
  /** The active master among `masters` (pickActiveMaster); NoActiveMasterError when none is. */
  pick(): Promise<string>;
  connect(address: string): C;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
  /** Monotonic milliseconds. */
  now(): number;
  policy?: FailoverPolicy;
  random?: () => number;
  /** Each move to another master, as a line for the user. */
  onMove?(note: string): void;
}

export class FailoverClient<C extends FollowClient> {
  /** When the current run of losses began, and the picks tried since; reset once a stream delivers again. */
  private lostSince: number | undefined;
  private misses = 0;
  private moving: Promise<void> | undefined;
  private closed = false;

  private constructor(
    private readonly d: FailoverDeps<C>,
    private address: string,
    private client: C,
  ) {}

  static async create<C extends FollowClient>(d: FailoverDeps<C>): Promise<FailoverClient<C>> {
    const address = await d.pick();
    return new FailoverClient(d, address, d.connect(address));
  }

  /** The client of the master in use now (it changes after a move). */
  get current(): C {
    return this.client;
  }

  get master(): string {
    return this.address;
  }

  /** The stored log, then (follow) live chunks; across masters, each byte printed once. */
  async *streamLogs(taskId: string, opts: { follow?: boolean } = {}, signal?: AbortSignal): AsyncGenerator<LogChunk> {
    const resume = new LogResume();
    for (;;) {
      resume.restart();
      const used = this.client;
      try {
        for await (const c of used.streamLogs(taskId, opts, signal)) {
          const part = resume.take(c);
          if (!part) continue;
          this.progressed();
          yield part;
        }
        // The master ends a log once it is all sent (follow: once the task is terminal).
        return;
      } catch (err) {
        if (!(await this.movedOn(`logs of task ${echoValue(taskId)}`, err, used, signal))) return;
      }
    }
  }

  /** The task's state as it changes; the first one again after each move (the new master's view). */
  async *watchTask(taskId: string, signal?: AbortSignal): AsyncGenerator<TaskInfo> {
    for (;;) {
      const used = this.client;
      try {
        for await (const t of used.watchTask(taskId, signal)) {
          this.progressed();
          yield t;
        }
        // A watch ends at the task's end (the caller stops reading first) or when its master goes.
        if (signal?.aborted || this.d.masters.length < 2) return;
        if (!(await this.movedOn(`watch task ${echoValue(taskId)}`, Object.assign(new Error('the watch ended before the task did'), { code: status.UNAVAILABLE }), used, signal))) return;
      } catch (err) {
        if (!(await this.movedOn(`watch task ${echoValue(taskId)}`, err, used, signal))) return;
      }
    }
  }

  getTask(taskId: string): Promise<TaskInfo> {
    return this.unary(`get task ${echoValue(taskId)}`, (c) => c.getTask(taskId));
  }

  /** Cancelling twice is harmless: a cancel lost with its master is sent again to the next. */
  cancelTask(taskId: string, reason = ''): Promise<TaskInfo> {
    return this.unary(`cancel task ${echoValue(taskId)}`, (c) => c.cancelTask(taskId, reason));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }

  private async unary<T>(what: string, call: (c: C) => Promise<T>): Promise<T> {
    for (;;) {
      const used = this.client;
      try {
        const r = await call(used);
        this.progressed();
        return r;
      } catch (err) {
        await this.moveOrThrow(what, err, used);
      }
    }
  }

  private progressed(): void {
    this.lostSince = undefined;
    this.misses = 0;
  }

  /** For a stream: true once on another master, false when the caller detached (the stream just ends). */
  private async movedOn(what: string, err: unknown, used: C, signal?: AbortSignal): Promise<boolean> {
    if (signal?.aborted) return false;
    try {
      await this.moveOrThrow(what, err, used, signal);
      return true;
    } catch (e) {
      if (signal?.aborted) return false;
      throw e;
    }
  }

  /**
   * A loss seen on `used`: when another stream of this command already moved past that client (an
   * attached run loses its log and its watch together), or is moving now, this one follows it
   * instead of picking again; one move at a time, one note per move.
   */
  private async moveOrThrow(what: string, err: unknown, used: C, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted || this.closed || this.d.masters.length < 2 || !isMasterLoss(err)) throw err;
    for (;;) {
      if (this.client !== used) return;
      const mine = !this.moving;
      this.moving ??= this.move(what, err, signal).finally(() => (this.moving = undefined));
      try {
        await this.moving;
        return;
      } catch (e) {
        // The stream that was moving detached; this one still wants a master: it moves itself.
        if (mine || signal?.aborted || !(e instanceof AbortedError)) throw e;
      }
    }
  }

  /** Closes the lost master's client and picks the active one, until the bound. */
  private async move(what: string, cause: unknown, signal?: AbortSignal): Promise<void> {
    const { d } = this;
    const lost = this.address;
    this.client.close();
    this.lostSince ??= d.now();
    let lastWhy = `${lost}: ${why(cause)}`;
    for (;;) {
      // The first pick is at once (a master that stepped down may have a successor already); the
      // next ones back off, also when a picked master loses the stream again before it delivers.
      if (this.misses++ > 0) {
        const wait = retryDelay(this.misses - 2, d.now() - this.lostSince, d.policy ?? DEFAULT_FAILOVER, d.random);
        if (wait === undefined) throw new FailoverExhaustedError(what, d.now() - this.lostSince, lastWhy, { cause });
        await d.sleep(wait, signal);
      }
      try {
        this.address = await d.pick();
      } catch (err) {
        if (!(err instanceof NoActiveMasterError)) throw err;
        lastWhy = err.message;
        continue;
      }
      this.client = d.connect(this.address);
      d.onMove?.(`${what}: lost master ${lost} (${why(cause)}); going on with ${this.address}`);
      return;
    }
  }
}

/** The master's side of a lost call ("Connection dropped", "standby master: … is active"), without the call's name. */
function why(err: unknown): string {
  const inner = err instanceof HivemindError && err.cause !== undefined ? err.cause : err;
  return describeGrpcError(inner);
}
