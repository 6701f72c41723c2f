// Whether this node's engine can run a task under gVisor: `runsc` registered as a Docker runtime
// AND a trivial container actually starting under it. Registration alone proves little: Debian's
// runsc registered without `--network=none` is listed by `docker info` yet fails every start
// ("cannot run with network enabled in root network namespace").
import { errorMessage } from '../common/errors.js';
import type { ContainerCreateConfig, ContainerEngine } from './container-engine.js';

/** The Docker runtime name gVisor is registered under (HostConfig.Runtime). */
export const GVISOR_RUNTIME = 'runsc';

/**
 * The PidsLimit of a gVisor container whose task may run `pids` processes. The host's pids cgroup
 * counts the sandbox's host threads, not the task's processes (those live in gVisor's kernel): a
 * runsc sandbox needs about 40 threads to start (it fails under 48 here), and on the ptrace
 * platform (no KVM) each process of the task costs it about 8 more (measured: 384 → 44 sleeping
 * processes). The host's pid table stays bounded exactly; the task's own process count only about
 * as asked, and a task over it ends its own sandbox (it fails; the host is unaffected).
 */
export function gvisorPidsLimit(pids: number): number {
  return GVISOR_SANDBOX_THREADS + GVISOR_THREADS_PER_PROCESS * pids;
}
const GVISOR_SANDBOX_THREADS = 64;
const GVISOR_THREADS_PER_PROCESS = 8;

/** How an operator makes gVisor usable on a Debian node (doctor and the worker's refusal say it). */
export const GVISOR_FIX =
  'apt-get install runsc, then register it in /etc/docker/daemon.json as "runtimes": {"runsc": {"path": "/usr/bin/runsc", "runtimeArgs": ["--network=none"]}} ' +
  '(node scripts/register-runsc.mjs merges it into an existing file) and reload Docker with `kill -HUP $(pidof dockerd)`';

/** Label of the probe container: not a task's (the reaper leaves it), removed by the probe itself. */
export const LABEL_PROBE = 'io.hivemind.probe';

export type GvisorProbe = { usable: true; detail: string } | { usable: false; reason: string };

/** Long enough for a cold runsc sandbox on a loaded machine (about 1 s here when idle). */
const PROBE_TIMEOUT_MS = 30_000;

function probeConfig(image: string): ContainerCreateConfig {
  return {
    name: `hivemind-gvisor-probe-${process.pid}-${Date.now()}`,
    Image: image,
    Cmd: ['true'],
    Env: [],
    Labels: { [LABEL_PROBE]: 'gvisor' },
    User: '65534:65534',
    NetworkDisabled: true,
    AttachStdin: false,
    AttachStdout: false,
    AttachStderr: false,
    Tty: false,
    OpenStdin: false,
    HostConfig: {
      NanoCpus: 500_000_000,
      Memory: 64 * 1024 ** 2,
      MemorySwap: 64 * 1024 ** 2,
      PidsLimit: gvisorPidsLimit(4),
      Runtime: GVISOR_RUNTIME,
      NetworkMode: 'none',
      ReadonlyRootfs: true,
      Tmpfs: {},
      CapDrop: ['ALL'],
      CapAdd: [],
      SecurityOpt: ['no-new-privileges'],
      Privileged: false,
      IpcMode: 'private',
      ShmSize: 1024 * 1024,
      Mounts: [],
      LogConfig: { Type: 'json-file', Config: { 'max-size': '65536' } },
      AutoRemove: false,
    },
  };
}

/**
 * Checks gVisor on `engine`, starting `true` from `image()` (a local image: the dev image
 * hivemind/busybox:1, asked for only once runsc is registered, so a node without gVisor builds no
 * image) under runsc with a task's lock-down. Never throws: a failure is the reason.
 */
export async function probeGvisor(engine: ContainerEngine, image: () => Promise<string>, signal?: AbortSignal): Promise<GvisorProbe> {
  let runtimes: string[];
  try {
    runtimes = await engine.runtimes(signal);
  } catch (err) {
    return { usable: false, reason: `cannot ask Docker for its runtimes: ${errorMessage(err)}` };
  }
  if (!runtimes.includes(GVISOR_RUNTIME)) {
    return { usable: false, reason: `Docker has no "${GVISOR_RUNTIME}" runtime registered (it lists ${runtimes.join(', ') || 'none'})` };
  }
  const timeout = AbortSignal.timeout(PROBE_TIMEOUT_MS);
  const both = signal ? AbortSignal.any([signal, timeout]) : timeout;
  let ref: string;
  try {
    ref = await image();
  } catch (err) {
    return { usable: false, reason: `no local image to try runtime "${GVISOR_RUNTIME}" with: ${errorMessage(err)}` };
  }
  let id: string | undefined;
  try {
    id = await engine.createContainer(probeConfig(ref), both);
    await engine.startContainer(id, both);
    const exit = await engine.waitContainer(id, both);
    if (exit.statusCode !== 0) return { usable: false, reason: `a trivial container under ${GVISOR_RUNTIME} exited with code ${exit.statusCode}${exit.error ? ` (${exit.error})` : ''}` };
    return { usable: true, detail: `runtime "${GVISOR_RUNTIME}" registered and a container starts under it` };
  } catch (err) {
    const why = timeout.aborted ? `did not finish within ${PROBE_TIMEOUT_MS / 1000} s` : errorMessage(err);
    return { usable: false, reason: `runtime "${GVISOR_RUNTIME}" is registered but a trivial container does not run under it: ${why}` };
  } finally {
    if (id !== undefined) await engine.removeContainer(id).catch(() => undefined);
  }
}
