// The steps of an idempotent close(): each runs in its own try/catch, so one failing step is
// reported and the next ones still run (tasks drained, sessions ended, the store closed).

/** Runs one named close step; never rejects. */
export type CloseStep = (name: string, fn: () => unknown) => Promise<void>;

/** A step runner that hands a failed step's name and error to `onFailure` (typically a log line). */
export function closeSteps(onFailure: (step: string, err: unknown) => void): CloseStep {
  return async (name, fn) => {
    try {
      await fn();
    } catch (err) {
      onFailure(name, err);
    }
  };
}
