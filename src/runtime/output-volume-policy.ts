// Which /output volumes a node runs tasks with: bounded loop filesystems where the host can make
// them; otherwise plain volumes, checked against the cap only after a task exits, and only where
// that was accepted (`hivemind dev`, or the operator's allowUnboundedOutput). Else the worker refuses.
import type { Logger } from '../common/logger.js';
import { ConfigError } from '../common/errors.js';
import { OUTPUT_FS_FIX, UnboundedOutputVolumes, type OutputVolumes } from './output-volume.js';

/**
 * What a node does where /output cannot be bounded: `refuse` to start (a worker serving a master,
 * the default), run `allowed` by its operator (allowUnboundedOutput: Docker Desktop has no loop
 * devices), or run as `dev` (the user's own tasks on their own machine).
 */
export type UnboundedOutputPolicy = 'refuse' | 'allowed' | 'dev';

/** Bounded volumes that can tell whether this host can make them (LoopOutputVolumes). */
export interface ProbedOutputVolumes extends OutputVolumes {
  probe(): Promise<{ ok: true } | { ok: false; reason: string }>;
}

/** The operator's opt-in, in each of its three spellings. */
export const ALLOW_UNBOUNDED_OUTPUT_OPT_IN = '--allow-unbounded-output (env HIVEMIND_ALLOW_UNBOUNDED_OUTPUT=true, config "allowUnboundedOutput": true)';

/** What a task's /output is on a host that cannot bound it: said at startup and by doctor. */
export const UNBOUNDED_OUTPUT_MEANS = "each task's /output is a plain Docker volume, checked against its cap only after the task exits, so a running task can fill this disk";

/**
 * The bounded volumes when the probe says this host can make them; else plain ones (with a
 * warning) where `policy` accepts that; else a ConfigError naming both ways out.
 */
export async function chooseOutputVolumes(bounded: ProbedOutputVolumes, policy: UnboundedOutputPolicy, logger: Logger): Promise<OutputVolumes> {
  const probe = await bounded.probe();
  if (probe.ok) return bounded;
  const why = `this host cannot bound what a task writes to /output (${probe.reason})`;
  switch (policy) {
    case 'allowed':
      logger.warn(`${why}: starting anyway, as allowUnboundedOutput asks: ${UNBOUNDED_OUTPUT_MEANS}`);
      return new UnboundedOutputVolumes();
    case 'dev':
      logger.warn(`${why}: dev mode runs anyway: ${UNBOUNDED_OUTPUT_MEANS}; a worker serving a master refuses to start here unless allowed with ${ALLOW_UNBOUNDED_OUTPUT_OPT_IN}`);
      return new UnboundedOutputVolumes();
    case 'refuse':
      throw new ConfigError(
        `${why}. To fix: ${OUTPUT_FS_FIX} (\`hivemind doctor\` checks it). ` +
          `Where a host has no loop devices (Docker Desktop), you may instead accept /output checked against its cap only after each task exits: ${ALLOW_UNBOUNDED_OUTPUT_OPT_IN}`,
      );
  }
}
