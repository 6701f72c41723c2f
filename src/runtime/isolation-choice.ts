// What a node offers, decided once at start from its --isolation and whether gVisor works here:
// `runc` runs tasks under runc and offers gVisor too when runsc works (a task opts in); `gvisor`
// runs every task under gVisor and refuses to start without a working runsc, so an operator can
// force all strangers' code under the user-space kernel.
import { HivemindError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { Isolation } from '../protocol/gen/hivemind/v1/common.js';
import type { IsolationName } from '../protocol/isolation-rules.js';
import type { ContainerEngine } from './container-engine.js';
import { ensureDevImage } from './dev-image.js';
import { GVISOR_FIX, probeGvisor, type GvisorProbe } from './gvisor.js';

/** `--isolation gvisor` on a node where runsc does not run a container. */
export class GvisorUnavailableError extends HivemindError {
  constructor(reason: string) {
    super('GVISOR_UNAVAILABLE', `--isolation gvisor: gVisor is not usable on this node: ${reason}. To fix: ${GVISOR_FIX}; \`hivemind doctor\` checks it`);
  }
}

export interface IsolationChoice {
  /** NodeFacts.isolations: what the master may place here. */
  offered: Isolation[];
  /** The runtime of a task that names none (RunnerDefaults.isolation). */
  runDefault: Isolation;
}

/** Pure: the offer for `mode` given the probe's answer; throws GvisorUnavailableError when gvisor is forced and unusable. */
export function chooseIsolations(mode: IsolationName, gvisor: GvisorProbe): IsolationChoice {
  if (mode === 'gvisor') {
    if (!gvisor.usable) throw new GvisorUnavailableError(gvisor.reason);
    return { offered: [Isolation.ISOLATION_GVISOR], runDefault: Isolation.ISOLATION_GVISOR };
  }
  return { offered: gvisor.usable ? [Isolation.ISOLATION_RUNC, Isolation.ISOLATION_GVISOR] : [Isolation.ISOLATION_RUNC], runDefault: Isolation.ISOLATION_RUNC };
}

/**
 * Probes gVisor with the local dev image (built offline from the host's busybox when missing), then
 * chooses; `known` is an answer decided without probing (an engine that cannot offer gVisor).
 */
export async function detectIsolations(mode: IsolationName, engine: ContainerEngine, logger: Logger, signal?: AbortSignal, known?: GvisorProbe): Promise<IsolationChoice> {
  const probe = known ?? (await probeGvisor(engine, () => ensureDevImage(engine, logger, signal ? { signal } : {}), signal));
  const choice = chooseIsolations(mode, probe);
  if (probe.usable) logger.info({ isolation: mode }, mode === 'gvisor' ? 'gVisor works here: every task runs under it' : 'gVisor works here: offered to tasks that ask for it');
  else logger.info({ reason: probe.reason }, 'gVisor not offered');
  return choice;
}
