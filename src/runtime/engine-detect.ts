// At worker start: ask the engine on --engine-socket what it is (engine-identity.ts), log it with
// what it enforces and what a Podman node does not offer (gVisor and the egress network are built
// on Docker's runtimes and its DOCKER-USER chain), so the operator reads it once, at the top.
import type { Logger } from '../common/logger.js';
import { EngineUnreachableError, errorMessage } from '../common/errors.js';
import { describeLimits } from '../protocol/limit-rules.js';
import type { ContainerEngine } from './container-engine.js';
import { describeEngine, identifyEngine, type EngineIdentity } from './engine-identity.js';
import { engineSocketText, type EngineSocket } from './engine-socket.js';
import type { GvisorProbe } from './gvisor.js';

/** "the node runs on rootful Podman" for a Podman node, undefined on Docker: what it cannot offer then follows. */
function onPodman(id: Pick<EngineIdentity, 'engine'>): string | undefined {
  return id.engine === 'docker' ? undefined : `the node runs on ${id.engine === 'podman' ? 'rootful' : 'rootless'} Podman`;
}

/** Why a node on this engine offers no gVisor, or undefined on Docker (then the runsc probe decides). */
export function gvisorRefusal(id: Pick<EngineIdentity, 'engine'>): GvisorProbe | undefined {
  const podman = onPodman(id);
  return podman === undefined ? undefined : { usable: false, reason: `${podman}, and gVisor is offered on Docker only (runsc registered with dockerd)` };
}

/** Why a node on this engine offers no egress network, or undefined on Docker. */
export function egressRefusal(id: Pick<EngineIdentity, 'engine'>): string | undefined {
  const podman = onPodman(id);
  return podman === undefined ? undefined : `${podman}, and the egress network is offered on Docker only (its firewall lives in Docker's DOCKER-USER chain)`;
}

export async function detectEngine(engine: ContainerEngine, socket: EngineSocket, logger: Logger, signal?: AbortSignal): Promise<EngineIdentity> {
  let id: EngineIdentity;
  try {
    id = identifyEngine(await engine.describe(signal));
  } catch (err) {
    throw new EngineUnreachableError(`the container engine at ${engineSocketText(socket)} did not answer (${errorMessage(err)}); start Docker or Podman's API service there, or point --engine-socket at it (\`hivemind doctor\` checks it)`, { cause: err });
  }
  const at = { engine: id.engine, version: id.version, socket: engineSocketText(socket), cgroupVersion: id.cgroupVersion, cgroupDriver: id.cgroupDriver };
  if (id.unenforced.length === 0) logger.info(at, `container engine: ${describeEngine(id)}; CPU, memory and pids limits are enforced`);
  else {
    logger.warn(
      { ...at, unenforced: id.unenforced },
      `container engine: ${describeEngine(id)}; it cannot enforce ${describeLimits(id.unenforced)} limits (${id.unenforcedWhy}): tasks setting them are not placed here, and tasks that set none run without this node's default limits (the worker starts only with --allow-unenforced-limits)`,
    );
  }
  if (id.engine !== 'docker') logger.info('on Podman this node offers neither gVisor nor the egress network (both need Docker)');
  return id;
}
