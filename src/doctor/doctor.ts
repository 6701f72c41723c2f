// `hivemind doctor`: checks what a node needs (Docker or Podman and the limits it enforces, busybox for the dev image, WireGuard tools,
// GPUs, free ports, a writable data dir, bounded task output, services, Node version) and says how
// to fix each problem.
import { accessSync, constants, mkdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { execa } from 'execa';
import { errorMessage } from '../common/errors.js';
import { LoopOutputVolumes, OUTPUT_FS_FIX, outputFsDir } from '../runtime/output-volume.js';
import { ALLOW_UNBOUNDED_OUTPUT_OPT_IN, UNBOUNDED_OUTPUT_MEANS } from '../runtime/output-volume-policy.js';
import { servicesSupported } from '../runtime/netns-connector.js';
import { readFile } from 'node:fs/promises';
import { ExecIptables } from '../runtime/egress-firewall.js';
import { egressDnsList, egressResolvers } from '../runtime/egress-policy.js';
import { silentLogger } from '../common/logger.js';
import { DockerEngine } from '../runtime/docker-engine.js';
import { ensureDevImage } from '../runtime/dev-image.js';
import { GVISOR_FIX, probeGvisor, type GvisorProbe } from '../runtime/gvisor.js';
import { describeEngine, identifyEngine, type EngineIdentity, type EngineReport } from '../runtime/engine-identity.js';
import { egressRefusal, gvisorRefusal } from '../runtime/engine-detect.js';
import { ALLOW_UNENFORCED_LIMITS_OPT_IN, enforcedLimitsFix } from '../runtime/limits-policy.js';
import { engineSocketText, type EngineSocket } from '../runtime/engine-socket.js';
import { describeLimits } from '../protocol/limit-rules.js';

export type CheckStatus = 'ok' | 'warn' | 'fail';

export interface CheckResult {
  name: string;
  status: CheckStatus;
  detail: string;
  /** What to do about it, when status is not ok. */
  fix?: string;
}

/** The I/O the checks need, injectable for tests. */
export interface DoctorProbes {
  /** What the engine on the worker's socket says of itself (/version, /info, Podman's /libpod/info). */
  engine(): Promise<EngineReport>;
  commandVersion(cmd: string, args: string[]): Promise<string | undefined>;
  portFree(host: string, port: number): Promise<boolean>;
  dirWritable(dir: string): Promise<string | undefined>;
  /** Why this host cannot make a task's bounded /output filesystem under `dir`; undefined when it can. */
  outputFs(dir: string): Promise<string | undefined>;
  /** Why this host cannot reach a service replica's port (nsenter, root); undefined when it can. */
  services(): Promise<string | undefined>;
  /** Why this host cannot offer the egress network (--allow-egress); undefined when it can. Reads, installs nothing. */
  egress(): Promise<string | undefined>;
  /** Whether tasks can run under gVisor here: runsc registered with Docker and a container starting under it. */
  gvisor(): Promise<GvisorProbe>;
  nodeVersion(): string;
}

/** The probes of this machine, the engine reached at `socket` (the worker's --engine-socket). */
export const systemProbes = (socket: EngineSocket): DoctorProbes => ({
  async engine() {
    return DockerEngine.create({ socket }).describe(AbortSignal.timeout(10_000));
  },
  async commandVersion(cmd, args) {
    try {
      const r = await execa(cmd, args, { timeout: 5000, reject: false, all: true });
      if (r.failed && r.exitCode === undefined) return undefined;
      return (r.all ?? '').split('\n')[0]?.trim() || 'present';
    } catch {
      return undefined;
    }
  },
  portFree(host, port) {
    return new Promise((resolve) => {
      const srv = createServer();
      srv.once('error', () => resolve(false));
      srv.listen(port, host, () => srv.close(() => resolve(true)));
    });
  },
  async dirWritable(dir) {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      accessSync(dir, constants.W_OK);
      return undefined;
    } catch (err) {
      return errorMessage(err);
    }
  },
  async outputFs(dir) {
    const r = await new LoopOutputVolumes(dir).probe();
    return r.ok ? undefined : r.reason;
  },
  async services() {
    const r = await servicesSupported();
    return r.ok ? undefined : r.reason;
  },
  async egress() {
    const r = await new ExecIptables().run(['-L', 'DOCKER-USER', '-n']);
    if (r.code === 127) return `iptables is not runnable (${r.stderr})`;
    if (r.code !== 0) return `the DOCKER-USER chain is missing or unreadable (${r.stderr || `exit ${r.code}`}): Docker must manage iptables and the worker must run as root`;
    try {
      egressResolvers(egressDnsList(process.env.HIVEMIND_EGRESS_DNS), await readFile('/etc/resolv.conf', 'utf8').catch(() => ''));
    } catch (err) {
      return errorMessage(err);
    }
    return undefined;
  },
  async gvisor() {
    const engine = DockerEngine.create({ socket });
    return probeGvisor(engine, () => ensureDevImage(engine, silentLogger()));
  },
  nodeVersion: () => process.version,
});

export interface DoctorOptions {
  dataDir: string;
  masterPort: number;
  monitorPort: number;
  /** The worker's allowUnboundedOutput (config file or env): which mode a host without loop devices gets. */
  allowUnboundedOutput?: boolean;
  /** The worker's engine socket (--engine-socket, HIVEMIND_ENGINE_SOCKET, DOCKER_HOST or Docker's). */
  engineSocket: EngineSocket;
}

export const ENGINE_FIX =
  'install Docker (Debian: apt-get install docker.io; start dockerd) or Podman (apt-get install podman crun slirp4netns uidmap fuse-overlayfs catatonit; serve its API with `podman system service --time=0 unix:///run/podman/podman.sock`, or as an ordinary user for rootless), and point the worker at it with --engine-socket or DOCKER_HOST; this user must be allowed on the socket';

export async function runDoctor(opts: DoctorOptions, probes: DoctorProbes = systemProbes(opts.engineSocket)): Promise<CheckResult[]> {
  const results: CheckResult[] = [];

  const major = Number(/^v(\d+)/.exec(probes.nodeVersion())?.[1] ?? 0);
  results.push(
    major >= 22
      ? { name: 'node', status: 'ok', detail: probes.nodeVersion() }
      : { name: 'node', status: 'fail', detail: `${probes.nodeVersion()} is too old`, fix: 'install Node 24 LTS (engines >=22)' },
  );

  const socket = engineSocketText(opts.engineSocket);
  let id: EngineIdentity | undefined;
  try {
    id = identifyEngine(await probes.engine());
    results.push({ name: 'engine', status: 'ok', detail: `${describeEngine(id)} at ${socket} (NodeFacts engine "${id.engine}")${id.rootless ? ': no root daemon runs the tasks' : ''}` });
  } catch (err) {
    results.push({ name: 'engine', status: 'fail', detail: `no container engine answers at ${socket}: ${errorMessage(err)}`, fix: ENGINE_FIX });
  }
  if (id) results.push(limitsCheck(id));

  results.push(
    commandCheck('busybox', await probes.commandVersion('busybox', ['--help']), () => 'present (used to build the dev image offline)', 'busybox not found: `hivemind dev` cannot build its task image offline', 'apt-get install busybox-static'),
    commandCheck('wireguard-tools', await probes.commandVersion('wg', ['--version']), (v) => v, '`wg` not found (needed to join a remote master over WireGuard)', 'apt-get install wireguard-tools'),
    commandCheck('wireguard-go', await probes.commandVersion('wireguard-go', ['--version']), (v) => v, 'wireguard-go not found (needed when the kernel has no WireGuard module)', 'apt-get install wireguard-go'),
  );

  const gpu = await probes.commandVersion('nvidia-smi', ['--query-gpu=name', '--format=csv,noheader']);
  results.push(
    gpu
      ? { name: 'gpus', status: 'ok', detail: `nvidia-smi: ${gpu}` }
      : { name: 'gpus', status: 'ok', detail: 'no nvidia-smi: this node offers no GPUs (install the NVIDIA driver and container toolkit to offer them)' },
  );

  for (const [name, port] of [['master port', opts.masterPort], ['monitor port', opts.monitorPort]] as const) {
    const free = await probes.portFree('127.0.0.1', port);
    results.push(
      free
        ? { name, status: 'ok', detail: `127.0.0.1:${port} is free` }
        : { name, status: 'warn', detail: `127.0.0.1:${port} is in use (fine if it is a running hivemind)`, fix: `stop what listens there (ss -ltnp 'sport = :${port}') or choose another port` },
    );
  }

  const dirErr = await probes.dirWritable(opts.dataDir);
  results.push(
    dirErr
      ? { name: 'data dir', status: 'fail', detail: `${opts.dataDir} is not writable: ${dirErr}`, fix: `create it and give this user write access, or pass --data-dir / set HIVEMIND_DATA_DIR` }
      : { name: 'data dir', status: 'ok', detail: `${opts.dataDir} is writable` },
  );

  const dir = outputFsDir(opts.dataDir);
  const outErr = dirErr ? 'the data dir is not writable' : await probes.outputFs(dir);
  results.push(
    !outErr
      ? { name: 'task output', status: 'ok', detail: `each task's /output is a loop filesystem in ${dir}: writes stop at its cap plus a small slack` }
      : opts.allowUnboundedOutput
        ? {
            name: 'task output',
            status: 'warn',
            detail: `cannot make loop filesystems in ${dir} (${outErr}); allowUnboundedOutput is set, so \`worker start\` runs unbounded: ${UNBOUNDED_OUTPUT_MEANS}`,
            fix: OUTPUT_FS_FIX,
          }
        : {
            name: 'task output',
            status: 'fail',
            detail: `cannot make loop filesystems in ${dir} (${outErr}): \`worker start\` refuses to start, \`dev\` runs with /output checked only after a task exits (a task can fill the disk)`,
            fix: `${OUTPUT_FS_FIX}; or, where the host has no loop devices (Docker Desktop), accept /output checked only after each task exits: ${ALLOW_UNBOUNDED_OUTPUT_OPT_IN}`,
          },
  );
  const noServices = await probes.services();
  results.push(
    !noServices
      ? { name: 'services', status: 'ok', detail: "can host service replicas: the worker reaches a replica's port inside its container's network namespace (nsenter)" }
      : {
          name: 'services',
          status: 'warn',
          detail: `cannot host service replicas (${noServices}): the worker offers no gateway pipe and gets none; batch tasks are not affected`,
          fix: 'run the worker as root with nsenter installed (apt-get install util-linux); a worker in a container needs --pid=host and CAP_SYS_ADMIN',
        },
  );
  const noEgress = (id && egressRefusal(id)) ?? (await probes.egress());
  results.push(
    !noEgress
      ? { name: 'egress', status: 'ok', detail: 'can offer the egress network (--allow-egress): its firewall can be installed in DOCKER-USER and INPUT, and a public resolver is known' }
      : {
          name: 'egress',
          status: 'warn',
          detail: `cannot offer the egress network (${noEgress}): with --allow-egress the worker refuses to start when a setting is wrong (no public resolver, a bad --egress-dns or --egress-subnet) and otherwise starts offering no egress; tasks without network are not affected`,
          fix: 'run the worker as root on a Docker that manages iptables (the default), and set --egress-dns to public resolvers when the host\'s are private (docs/egress.md)',
        },
  );
  if (!noEgress) {
    // A cap (the node's --egress-rate or a task's own) is set with tc, the upload side through the
    // task's network namespace: without them such a task fails to start.
    const tc = await probes.commandVersion('tc', ['-V']);
    const nsenter = await probes.commandVersion('nsenter', ['--version']);
    results.push(commandCheck('egress rate', tc && nsenter ? `${tc}; ${nsenter}` : undefined, () => 'tc and nsenter are here: egress rate caps (--egress-rate on the node or on a task) can be applied',
      `${tc ? 'nsenter' : 'tc'} not found: an egress task with a rate cap (the node's --egress-rate or its own) fails to start`, 'apt-get install iproute2 util-linux'));
  }
  const gvisor = (id && gvisorRefusal(id)) ?? (await probes.gvisor());
  results.push(
    gvisor.usable
      ? { name: 'gvisor', status: 'ok', detail: `${gvisor.detail}: the node offers gVisor isolation (--isolation gvisor runs every task under it)` }
      : {
          name: 'gvisor',
          status: 'warn',
          detail: `not usable (${gvisor.reason}): the node offers runc only, and \`worker start --isolation gvisor\` refuses to start`,
          fix: GVISOR_FIX,
        },
  );
  return results;
}

/** A command the node may need: found (ok, what it said) or not (warn, with the fix). */
function commandCheck(name: string, version: string | undefined, found: (version: string) => string, missing: string, fix: string): CheckResult {
  return version ? { name, status: 'ok', detail: found(version) } : { name, status: 'warn', detail: missing, fix };
}

/** Which of CPU, memory and pids limits the engine enforces, with the way out when some do not hold. */
export function limitsCheck(id: EngineIdentity): CheckResult {
  if (id.unenforced.length === 0) return { name: 'limits', status: 'ok', detail: 'CPU, memory and pids limits are enforced' };
  return {
    name: 'limits',
    status: 'warn',
    detail: `${describeEngine(id)} cannot enforce ${describeLimits(id.unenforced)} limits (${id.unenforcedWhy}): \`worker start\` refuses to start here unless given ${ALLOW_UNENFORCED_LIMITS_OPT_IN}; with it the master places no task setting a limit here, the worker refuses one sent anyway, and tasks that set none run without the node's default limits`,
    fix: enforcedLimitsFix(id),
  };
}

export function formatDoctor(results: CheckResult[]): string {
  const mark: Record<CheckStatus, string> = { ok: 'ok  ', warn: 'WARN', fail: 'FAIL' };
  return results
    .map((r) => `[${mark[r.status]}] ${r.name}: ${r.detail}` + (r.fix ? `\n       fix: ${r.fix}` : ''))
    .join('\n');
}
