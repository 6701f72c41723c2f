// A running task's own progress (docs/progress.md), from its output to the master: the scanner reads
// the lines, and the latest report (with the counts) goes through the outbox at most once a second,
// so a task printing a million lines costs the master and the node's store a line a second.
import type { Clock } from '../common/clock.js';
import type { TaskProgress } from '../protocol/gen/hivemind/v1/common.js';
import { PROGRESS_INTERVAL_MS } from '../protocol/progress-rules.js';
import { ProgressScanner, type ProgressTally } from './progress-scanner.js';

/** 0: send now; otherwise wait this long, then send the latest. */
export function progressSendDelay(lastSentAtMs: number | undefined, nowMs: number, intervalMs = PROGRESS_INTERVAL_MS): number {
  if (lastSentAtMs === undefined) return 0;
  return Math.max(0, lastSentAtMs + intervalMs - nowMs);
}

/** The TaskProgress the counts and the latest accepted report stand for. */
export function progressOf(t: ProgressTally): TaskProgress {
  const r = t.latest?.report;
  return {
    ...(r?.fraction !== undefined ? { fraction: r.fraction } : {}),
    message: r?.message ?? '',
    metrics: new Map(r?.metrics ?? []),
    atMs: t.latest?.atMs ?? 0,
    updates: t.updates,
    rejected: t.rejected,
  };
}

export interface ProgressReporterDeps {
  clock: Clock;
  /** Through the outbox, as a RUNNING update. */
  send(progress: TaskProgress): void;
  /** Every progress line, at once (listeners such as the monitor throttle). */
  onLine?(tally: ProgressTally, accepted: boolean, reason?: string): void;
  intervalMs?: number;
}

export class TaskProgressReporter {
  private readonly scanner: ProgressScanner;
  private lastSentAt: number | undefined;
  private sentUpdates = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(private readonly deps: ProgressReporterDeps) {
    this.scanner = new ProgressScanner(() => deps.clock.now(), (accepted, reason) => this.onLine(accepted, reason));
  }

  get tally(): ProgressTally {
    return this.scanner;
  }

  /** A chunk of the task's output. */
  push(stream: 'stdout' | 'stderr', data: Buffer): void {
    if (!this.stopped) this.scanner.push(stream, data);
  }

  /**
   * The container ended: the latest report goes now if it has not (the end of a flood is read
   * after the exit, and the master must hear how the task ended), then nothing more.
   */
  finish(): void {
    if (this.stopped) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.send();
    this.stop();
  }

  /** No update may follow the task's terminal one: a pending send is dropped. Idempotent. */
  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private onLine(accepted: boolean, reason?: string): void {
    this.deps.onLine?.(this.scanner, accepted, reason);
    if (this.stopped || this.timer) return;
    const delay = progressSendDelay(this.lastSentAt, this.deps.clock.now(), this.deps.intervalMs);
    if (delay === 0) return this.send();
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (!this.stopped) this.send();
    }, delay);
  }

  private send(): void {
    if (this.scanner.updates === this.sentUpdates) return;
    this.lastSentAt = this.deps.clock.now();
    this.sentUpdates = this.scanner.updates;
    this.deps.send(progressOf(this.scanner));
  }
}
