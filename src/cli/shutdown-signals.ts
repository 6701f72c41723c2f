// The one place that handles stop requests: OS signals, and for a worker the stop-request file
// of `hivemind worker stop` (stop-request.ts). The first SIGTERM/SIGINT/request drains (running
// tasks may finish within the drain timeout), a second one cancels what is left at once.
import type { Logger } from '../common/logger.js';
import { watchStopRequests } from './stop-request.js';

export interface Drainable {
  /** Stop taking work, let running work finish (bounded by its own timeout), then close. */
  shutdown(): Promise<void>;
  /** Cancel everything still running now; shutdown() then finishes quickly. */
  forceShutdown(): void;
}

/** `stopRequestDir`: also obey `hivemind worker stop` requests left in this data dir. */
export function installShutdownHandlers(target: Drainable, logger: Logger, onDone: (code: number) => void, stopRequestDir?: string): () => void {
  let signals = 0;
  const handler = (sig: NodeJS.Signals | 'stop request') => {
    signals++;
    if (signals === 1) {
      logger.info({ signal: sig }, 'shutting down: draining running tasks (send the signal again, or run `hivemind worker stop` again, to cancel them now)');
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
  const unwatch = stopRequestDir === undefined ? () => undefined : watchStopRequests(stopRequestDir, () => handler('stop request'));
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
    unwatch();
  };
}

/**
 * For the time before installShutdownHandlers can be (a worker probing its host: Docker, gVisor,
 * the egress firewall): SIGTERM and SIGINT are held instead of killing the process with the default
 * action. `replay()` removes the holders and raises a held signal again, for the handlers installed
 * by then to drain as they would have; `drop()` only removes them.
 */
export function holdShutdownSignals(): { replay(): void; drop(): void } {
  let held: NodeJS.Signals | undefined;
  const hold = (sig: NodeJS.Signals) => {
    held ??= sig;
  };
  process.on('SIGTERM', hold);
  process.on('SIGINT', hold);
  const drop = () => {
    process.off('SIGTERM', hold);
    process.off('SIGINT', hold);
  };
  return {
    replay() {
      drop();
      if (held) process.kill(process.pid, held);
    },
    // The start failed: its error is the exit, whatever was held.
    drop,
  };
}
