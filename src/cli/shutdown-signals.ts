// The one place that handles OS signals: the first SIGTERM/SIGINT drains (running tasks may
// finish within the drain timeout), a second one cancels what is left at once.
import type { Logger } from '../common/logger.js';

export interface Drainable {
  /** Stop taking work, let running work finish (bounded by its own timeout), then close. */
  shutdown(): Promise<void>;
  /** Cancel everything still running now; shutdown() then finishes quickly. */
  forceShutdown(): void;
}

export function installShutdownHandlers(target: Drainable, logger: Logger, onDone: (code: number) => void): () => void {
  let signals = 0;
  const handler = (sig: NodeJS.Signals) => {
    signals++;
    if (signals === 1) {
      logger.info({ signal: sig }, 'shutting down: draining running tasks (send the signal again to cancel them now)');
      target.shutdown().then(
        () => onDone(0),
        (err: unknown) => {
          logger.error({ err }, 'shutdown failed');
          onDone(1);
        },
      );
    } else {
      logger.warn({ signal: sig }, 'second signal: cancelling running tasks now');
      target.forceShutdown();
    }
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
