// Per-key call counting over a sliding window (an injected clock): how the master bounds how
// often one node may repeat a call whose work it should not redo in a loop (Register, Subscribe).
import type { Clock } from '../common/clock.js';
import { HivemindError } from '../common/errors.js';

/** A caller over its call rate; maps to RESOURCE_EXHAUSTED, which a worker retries with backoff. */
export class RateLimitedError extends HivemindError {
  constructor(message: string) {
    super('RESOURCE_EXHAUSTED', message);
  }
}

export class CallRate {
  /** Call times per key, oldest first; at most `max` kept per key. */
  private readonly calls = new Map<string, number[]>();
  private prunedAt = 0;

  constructor(
    private readonly clock: Clock,
    private readonly what: string,
    private readonly max: number,
    private readonly windowMs: number,
  ) {}

  /** Counts one call of `key` (e.g. a node id); throws RateLimitedError past `max` within the window. */
  take(key: string, label = key): void {
    const now = this.clock.now();
    const times = (this.calls.get(key) ?? []).filter((t) => now - t < this.windowMs);
    if (times.length >= this.max) {
      this.calls.set(key, times);
      const retryInS = Math.ceil((times[0]! + this.windowMs - now) / 1000);
      throw new RateLimitedError(`${label}: more than ${this.max} ${this.what} calls in ${this.windowMs / 1000} s; refused, retry in ${retryInS} s`);
    }
    times.push(now);
    this.calls.set(key, times);
    this.prune(now);
  }

  /** Drops keys idle for a whole window (at most once a window), so the map holds only recent callers. */
  private prune(now: number): void {
    if (now - this.prunedAt < this.windowMs) return;
    this.prunedAt = now;
    for (const [key, times] of this.calls) {
      if (now - times[times.length - 1]! >= this.windowMs) this.calls.delete(key);
    }
  }
}
