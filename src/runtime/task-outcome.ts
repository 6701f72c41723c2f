// How a task attempt's end becomes its outcome: the exit status, an OOM kill, the wall-clock limit,
// cancellation and a vanishing daemon turned into an outcome kind and the message the user reads.
import { AbortedError, HivemindError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { formatBytes } from '../common/units.js';
import { OutcomeKind } from '../protocol/gen/hivemind/v1/common.js';
import { abortOutcomeKind, type AbortReason } from '../worker/contracts.js';
import type { EffectiveLimits } from './container-spec.js';

/** Thrown inside execute() to end it with a specific outcome; never escapes. */
export class OutcomeError extends HivemindError {
  constructor(readonly kind: OutcomeKind, message: string, readonly exitCode = -1) {
    super('TASK_OUTCOME', message);
  }
}

/** Exit code reported when the process never exited on its own (start failures, rejections). */
export const NO_EXIT_CODE = -1;

/** Exit codes of a container ended by SIGTERM or SIGKILL (128 + signal). */
const SIGNAL_EXITS = new Set([128 + 15, 128 + 9]);

/** How a task container's run ended. */
export interface RunEnd {
  exitCode: number;
  oomKilled: boolean;
  stopped?: AbortReason | 'timeout';
  durationMs: number;
}

export interface RunOutcome {
  kind: OutcomeKind;
  message: string;
  /** False when the outcome is final as it is: /output is not collected. */
  collect: boolean;
}

/**
 * The outcome of a run that ended. `daemonGoing` is asked only when the exit looks like a signal
 * the task did not ask for (a stopping daemon ends its containers).
 */
export async function runOutcome(run: RunEnd, limits: Pick<EffectiveLimits, 'timeoutMs' | 'memoryBytes'>, daemonGoing: () => Promise<boolean>, log: Logger): Promise<RunOutcome> {
  if (run.stopped === 'cancelled' || run.stopped === 'superseded' || run.stopped === 'shutdown') {
    return { kind: abortOutcomeKind(run.stopped), message: `task ${run.stopped === 'shutdown' ? 'stopped by node shutdown' : run.stopped}`, collect: false };
  }
  if (run.stopped === 'timeout') {
    return { kind: OutcomeKind.OUTCOME_KIND_TIMED_OUT, message: `killed after the ${limits.timeoutMs} ms wall-clock limit`, collect: true };
  }
  if (run.oomKilled && run.exitCode !== 0) {
    return { kind: OutcomeKind.OUTCOME_KIND_OOM_KILLED, message: `killed by the kernel: over the ${limits.memoryBytes}-byte memory limit`, collect: true };
  }
  if (SIGNAL_EXITS.has(run.exitCode) && (await daemonGoing())) {
    // A stopping daemon kills its containers first (SIGTERM, then SIGKILL 10 s later) and
    // answers a little longer: the exit was the daemon's, not the task's.
    log.warn({ exitCode: run.exitCode }, 'lost the Docker daemon during the task');
    return {
      kind: OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR,
      message: `the Docker daemon went away during the task (stopped or restarted): the container was ended with code ${run.exitCode} as the daemon shut down`,
      collect: false,
    };
  }
  // The engine flags OOM for any process of the container; a task whose main process still
  // exited 0 handled it, and its result counts.
  return {
    kind: OutcomeKind.OUTCOME_KIND_EXITED,
    message: `exited with code ${run.exitCode}${run.oomKilled ? ' (a process of the task was killed for exceeding the memory limit)' : ''}`,
    collect: true,
  };
}

/** An engine refusal of the config (bad limits, missing runtime) is START_FAILED, not a crash. */
export async function createOrStartFail<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof AbortedError) throw err;
    throw new OutcomeError(OutcomeKind.OUTCOME_KIND_START_FAILED, errorMessage(err));
  }
}

/** The rejection of an output over its cap, naming the cap and where it came from. */
export function overCapMessage(askedBytes: number, capBytes: number): string {
  const from = askedBytes > 0 && askedBytes <= capBytes ? 'the task\'s max_output_bytes' : 'the node\'s --max-output';
  return `task wrote more than the ${formatBytes(capBytes)} output cap (${from})`;
}
