// Live task output for the monitor, throttled: a task may print 5,000 lines a second, the page
// gets at most `maxBatchBytes` every `flushMs` per task. When output comes faster than that, the
// oldest pending bytes are dropped (the tail is what a person watching wants) and counted, so
// the page can say how much it skipped. A bounded tail per task serves a newly following page.
import type { LogPush } from './monitor-types.js';

export interface LogRelayOptions {
  flushMs: number;
  maxBatchBytes: number;
  tailBytes: number;
  emit(push: LogPush): void;
}

export const DEFAULT_LOG_RELAY: Omit<LogRelayOptions, 'emit'> = { flushMs: 250, maxBatchBytes: 64 * 1024, tailBytes: 64 * 1024 };

interface TaskLog {
  attempt: number;
  pending: Buffer[];
  pendingBytes: number;
  dropped: number;
  tail: Buffer[];
  tailBytes: number;
  timer: NodeJS.Timeout | undefined;
}

/** Keeps the last `max` bytes of `chunks` (mutates), starting after a newline when one is near. */
function keepLast(chunks: Buffer[], total: number, max: number): { chunks: Buffer[]; bytes: number; dropped: number } {
  if (total <= max) return { chunks, bytes: total, dropped: 0 };
  let all = Buffer.concat(chunks, total).subarray(total - max);
  // Start on a line boundary when one is close, so the page does not show half a line.
  const nl = all.indexOf(0x0a);
  if (nl >= 0 && nl < 4096 && nl < all.length - 1) all = all.subarray(nl + 1);
  return { chunks: [Buffer.from(all)], bytes: all.length, dropped: total - all.length };
}

export class LogRelay {
  private readonly tasks = new Map<string, TaskLog>();
  private closed = false;

  constructor(private readonly opts: LogRelayOptions) {}

  push(taskId: string, attempt: number, data: Buffer): void {
    if (this.closed || data.length === 0) return;
    let t = this.tasks.get(taskId);
    if (!t || t.attempt !== attempt) {
      if (t?.timer) clearTimeout(t.timer);
      t = { attempt, pending: [], pendingBytes: 0, dropped: 0, tail: [], tailBytes: 0, timer: undefined };
      this.tasks.set(taskId, t);
    }
    t.pending.push(data);
    t.pendingBytes += data.length;
    if (t.pendingBytes > this.opts.maxBatchBytes * 4) this.trimPending(t);
    t.timer ??= setTimeout(() => this.flush(taskId), this.opts.flushMs);
  }

  /**
   * The recent output of a task that has already been pushed: what a page that starts following
   * gets first. Pending bytes are not in it, so the next push continues it without repeating a
   * line.
   */
  tail(taskId: string): { attempt: number; text: string } | undefined {
    const t = this.tasks.get(taskId);
    if (!t) return undefined;
    const kept = keepLast(t.tail, t.tailBytes, this.opts.tailBytes);
    return { attempt: t.attempt, text: Buffer.concat(kept.chunks).toString('utf8') };
  }

  /** The task ended: push what is pending, then forget it. */
  finish(taskId: string): void {
    const t = this.tasks.get(taskId);
    if (!t) return;
    this.flush(taskId);
    this.tasks.delete(taskId);
  }

  close(): void {
    this.closed = true;
    for (const t of this.tasks.values()) if (t.timer) clearTimeout(t.timer);
    this.tasks.clear();
  }

  private trimPending(t: TaskLog): void {
    const kept = keepLast(t.pending, t.pendingBytes, this.opts.maxBatchBytes);
    t.pending = kept.chunks;
    t.pendingBytes = kept.bytes;
    t.dropped += kept.dropped;
  }

  private flush(taskId: string): void {
    const t = this.tasks.get(taskId);
    if (!t) return;
    if (t.timer) clearTimeout(t.timer);
    t.timer = undefined;
    if (t.pendingBytes === 0) return;
    this.trimPending(t);
    const batch = Buffer.concat(t.pending, t.pendingBytes);
    const push: LogPush = { taskId, attempt: t.attempt, text: batch.toString('utf8'), dropped: t.dropped };
    t.tail.push(batch);
    t.tailBytes += batch.length;
    if (t.tailBytes > this.opts.tailBytes * 2) {
      const kept = keepLast(t.tail, t.tailBytes, this.opts.tailBytes);
      t.tail = kept.chunks;
      t.tailBytes = kept.bytes;
    }
    t.pending = [];
    t.pendingBytes = 0;
    t.dropped = 0;
    this.opts.emit(push);
  }
}
