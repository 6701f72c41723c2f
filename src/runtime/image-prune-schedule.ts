// When the image GC runs: once when started (after the worker registered), then every interval;
// never two collections at once; close() stops the timer and aborts a collection under way.
import { AbortedError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { PruneResult } from './image-pruner.js';

export interface Pruner {
  prune(signal: AbortSignal): Promise<PruneResult>;
}

/** Default time between two image collections. */
export const IMAGE_PRUNE_INTERVAL_MS = 10 * 60_000;

export class ImagePruneSchedule {
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private readonly stop = new AbortController();
  private closed = false;

  constructor(
    private readonly pruner: Pruner,
    private readonly intervalMs: number,
    private readonly logger: Logger,
  ) {}

  /** Collects now, then every interval. Idempotent: a second start changes nothing. */
  start(): void {
    if (this.closed || this.timer) return;
    this.timer = setInterval(() => this.runSoon(), this.intervalMs);
    this.timer.unref();
    this.runSoon();
  }

  /** Starts a collection unless one is under way (which then stands for this one). */
  runSoon(): void {
    if (this.closed || this.running) return;
    this.running = this.pruner
      .prune(this.stop.signal)
      .then((r) => {
        if (r.removed.length > 0) this.logger.info({ removed: r.removed.length, freedBytes: r.freedBytes, keptBytes: r.keptBytes }, 'image collection done');
        else this.logger.debug({ keptBytes: r.keptBytes }, 'image collection: nothing to remove');
      })
      .catch((err: unknown) => {
        if (err instanceof AbortedError && this.stop.signal.aborted) return;
        this.logger.warn({ err: errorMessage(err) }, 'image collection failed; trying again at the next interval');
      })
      .finally(() => {
        this.running = undefined;
      });
  }

  /** Idempotent. Resolves once a collection under way has stopped. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    this.stop.abort(new AbortedError('image collection stopped: the worker is closing'));
    await this.running;
  }
}
