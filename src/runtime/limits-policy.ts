// Whether a worker starts on an engine that cannot enforce some of CPU, memory and pids limits
// (rootless Podman on cgroup v1 enforces none). The master never places a task that sets such a
// limit there and the worker refuses one sent anyway; but a task that sets none would run without
// the node's own default limits (1 CPU, 512 MiB, 256 pids), so a stranger's fork bomb or memory hog
// would be bounded by nothing but the host. That is the owner's call to make, once, knowingly: by
// default such a worker does not start and says what to do; --allow-unenforced-limits starts it.
import { ConfigError } from '../common/errors.js';
import { describeLimits } from '../protocol/limit-rules.js';
import { describeEngine, type EngineIdentity } from './engine-identity.js';
import { engineSocketText, type EngineSocket } from './engine-socket.js';
import { ROOTLESS_CGROUP_V1_FIX, cgroupVersionOf } from './engine-limits.js';

export const ALLOW_UNENFORCED_LIMITS_OPT_IN = '--allow-unenforced-limits (env HIVEMIND_ALLOW_UNENFORCED_LIMITS=true, config "allowUnenforcedLimits": true)';

/** The way to an engine that enforces every limit, for the log, the error and doctor. */
export function enforcedLimitsFix(id: Pick<EngineIdentity, 'rootless' | 'cgroupVersion'>): string {
  const rootlessV1 = id.rootless && cgroupVersionOf(id.cgroupVersion) !== '2';
  return rootlessV1 ? ROOTLESS_CGROUP_V1_FIX : "delegate the cpu, memory and pids cgroup controllers to the engine's user (systemd: Delegate=cpu memory pids in user@.service), or run rootful Podman or Docker";
}

export class UnenforcedLimitsError extends ConfigError {}

/** Throws UnenforcedLimitsError when the engine drops a limit and the operator has not accepted that. */
export function checkLimitsPolicy(id: EngineIdentity, socket: EngineSocket, allowed: boolean): void {
  if (id.unenforced.length === 0 || allowed) return;
  throw new UnenforcedLimitsError(
    `the container engine at ${engineSocketText(socket)} (${describeEngine(id)}) cannot enforce ${describeLimits(id.unenforced)} limits (${id.unenforcedWhy ?? 'the engine drops them'}), ` +
      `so a task would run without this node's default limits and could take the whole machine: ${enforcedLimitsFix(id)}; ` +
      `or start with ${ALLOW_UNENFORCED_LIMITS_OPT_IN} to take only tasks that set no limit, unbounded`,
  );
}
