// Where a path of the worker's own filesystem is on the Docker host. A task's data set is a bind
// mount of the worker's cache entry, and the daemon reads bind sources on its side: the same path
// when the worker runs on the host, but for a worker in its own container (the hivemind/worker
// image, its data dir on a named volume) the path of that volume or bind on the host. Found once at
// start by inspecting the worker's own container.
import { readFile } from 'node:fs/promises';
import { posix } from 'node:path';
import { HivemindError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ContainerEngine, ContainerMount } from './container-engine.js';

/** A path of this process cannot be named to the Docker daemon (it is in the container's own layer). */
export class HostPathError extends HivemindError {
  constructor(message: string) {
    super('HOST_PATH_UNKNOWN', message);
  }
}

/**
 * The container id in /proc/self/mountinfo: Docker bind-mounts this container's /etc/hostname (and
 * hosts, resolv.conf) from its containers/<id>/ dir. Only a mount AT those paths counts: a process
 * on the host can see other containers' files under /var/lib/docker in its mount table, and must
 * not take itself for one of them.
 */
export function ownContainerId(mountinfo: string): string | undefined {
  for (const line of mountinfo.split('\n')) {
    // fields: id parent major:minor root mount-point options ... - fstype source super-options
    const [, , , root, mountPoint] = line.split(' ');
    if (mountPoint !== '/etc/hostname' && mountPoint !== '/etc/hosts' && mountPoint !== '/etc/resolv.conf') continue;
    const m = /\/containers\/([0-9a-f]{64})\/(?:hostname|hosts|resolv\.conf)$/.exec(root ?? '');
    if (m) return m[1];
  }
  return undefined;
}

/** Maps a path through the container's mounts: the deepest mount holding it decides. Pure. */
export function hostPathMapper(mounts: readonly ContainerMount[]): (path: string) => string {
  const byDepth = [...mounts].filter((m) => m.source && m.destination.startsWith('/')).sort((a, b) => b.destination.length - a.destination.length);
  return (path: string) => {
    const p = posix.normalize(path);
    for (const m of byDepth) {
      const dest = m.destination.replace(/\/+$/, '') || '/';
      if (p === dest || p.startsWith(dest === '/' ? '/' : `${dest}/`)) return posix.join(m.source, p.slice(dest.length));
    }
    throw new HostPathError(`${path} is inside the worker's container but on no volume or bind mount, so Docker cannot mount it into a task: put the worker's data dir on a volume (-v hivemind-data:/var/lib/hivemind)`);
  };
}

/**
 * The mapping for this process: undefined when it does not run in a container (paths are the
 * host's), or when its container cannot be inspected (then it is logged, and paths are used as
 * they are).
 */
export async function detectHostPaths(
  engine: Pick<ContainerEngine, 'inspectContainer'>,
  logger: Logger,
  readMountinfo: () => Promise<string> = () => readFile('/proc/self/mountinfo', 'utf8'),
): Promise<((path: string) => string) | undefined> {
  const id = ownContainerId(await readMountinfo().catch(() => ''));
  if (!id) return undefined;
  try {
    const mounts = (await engine.inspectContainer(id)).mounts ?? [];
    logger.info({ containerId: id.slice(0, 12), mounts: mounts.map((m) => `${m.source}:${m.destination}`) }, 'running in a container: data sets are mounted from these host paths');
    return hostPathMapper(mounts);
  } catch (err) {
    logger.warn({ containerId: id.slice(0, 12), err: errorMessage(err) }, 'cannot inspect the worker\'s own container: data set paths are passed to Docker as they are');
    return undefined;
  }
}
