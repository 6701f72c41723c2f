// The worker's configuration: file section "worker", HIVEMIND_* env, `hivemind worker start` flags.
// Defaults: WORKER_DEFAULTS (config/defaults.ts), the one place they are written. The worker's own
// settings (data dir, task slots, caps, drain timeout) come out compiled by compileWorkerSettings,
// under the names Worker.create takes, so the wiring passes them on as they are.
import { join } from 'node:path';
import { z } from 'zod';
import { WORKER_DEFAULTS } from './defaults.js';
import { checkMonitorBinding } from './monitor-binding.js';
import { hivemindHome } from './paths.js';
import { compileWorkerSettings, type CompiledWorkerSettings } from './worker-settings.js';
import { stripBrackets } from '../common/address.js';
import { compileSection, zBool, zParsed, zMasterList, zDurationMs, zInt, zLabels, zLogLevel, zPositive, zSize, zWgInterface, type ConfigInput, type FieldSource } from './layered-config.js';
import { CONTROL_CHARACTERS } from '../protocol/node-limits.js';
import { parseRate } from '../runtime/egress-rate.js';
import { ISOLATION_NAMES, type IsolationName } from '../protocol/isolation-rules.js';
import { defaultEngineSocket, parseEngineSocket, type EngineSocket } from '../runtime/engine-socket.js';

const schema = z
  .object({
    /**
     * Master gRPC addresses (HOST:PORT, comma-separated, or a list in the file) of a direct
     * master: several when masters share one store (one active, the others standby); the node
     * tries them in order and stays on the one that works. Not used in tunnel mode.
     */
    master: zMasterList.optional(),
    /** Enrollment token from `hivemind token create`; only needed on first start. */
    token: z.string().min(1).optional(),
    /** State directory: identity, SQLite history, spooled results. Default $HIVEMIND_HOME/worker. */
    dataDir: z.string().min(1).optional(),
    /** Display name; default the hostname. */
    name: z.string().min(1).max(64).refine((v) => !CONTROL_CHARACTERS.test(v), 'no control characters').optional(),
    labels: zLabels.optional(),
    /** Concurrent tasks. Default WORKER_DEFAULTS.maxTasks, applied by compileWorkerSettings. */
    maxTasks: zInt(1, 256).optional(),
    /** CPU cores offered to tasks. Default: all cores. */
    cpus: zPositive.optional(),
    /** Memory offered to tasks. Default: total memory minus WORKER_DEFAULTS.memoryReserveBytes. */
    memory: zSize('memory').optional(),
    /** Resource report interval. Default: the master's (30s unless it is configured otherwise). */
    reportInterval: zDurationMs('report interval').optional(),
    /** How long SIGTERM waits for running tasks before cancelling them. Default WORKER_DEFAULTS.drainTimeoutMs, applied by compileWorkerSettings. */
    drainTimeout: zDurationMs('drain timeout').optional(),
    /** How long a drain keeps service replicas running for the master to hand them over. Default WORKER_DEFAULTS.handoverWaitMs, applied by compileWorkerSettings. */
    handoverWait: zDurationMs('handover wait').optional(),
    /** Cap on a task's /output tree. */
    maxOutput: zSize('max output').default(WORKER_DEFAULTS.maxOutputBytes),
    /**
     * Where this host cannot bound a task's /output while it runs (no loop devices: Docker
     * Desktop), start anyway with /output checked against its cap only after the task exits,
     * instead of refusing to start.
     */
    allowUnboundedOutput: zBool.default(WORKER_DEFAULTS.allowUnboundedOutput),
    /**
     * On an engine that cannot enforce CPU, memory or pids limits (rootless Podman on cgroup v1),
     * start anyway: only tasks that set no limit are taken, and they run without the node's
     * default limits. Off: such a worker refuses to start (runtime/limits-policy.ts).
     */
    allowUnenforcedLimits: zBool.default(WORKER_DEFAULTS.allowUnenforcedLimits),
    logLevel: zLogLevel.default(WORKER_DEFAULTS.logLevel),
    /** Write the log to this file (rotated to <file>.1 at 16 MiB) instead of stderr: for service managers that keep no output. */
    logFile: z.string().min(1).optional(),
    /** WireGuard interface name in tunnel mode. */
    wgInterface: zWgInterface,
    /** Disk budget for the images this worker pulled; unused ones are pruned down to it. */
    imageBudget: zSize('image budget').default(WORKER_DEFAULTS.imageBudgetBytes),
    /** A pulled image no task used for this long may be pruned when over the budget. */
    imageUnusedFor: zDurationMs('image unused for').default(WORKER_DEFAULTS.imageUnusedForMs),
    /**
     * Disk budget of the data cache (data sets tasks mount, under <dataDir>/cache); the least
     * recently used entries no task holds are evicted to stay under it. Default: a share
     * (WORKER_DEFAULTS.cacheFreeShare) of the data dir's free disk when the worker starts.
     */
    cacheMax: zSize('cache max').optional(),
    /** Local web monitor port; 0 turns the monitor off. */
    monitorPort: zInt(0, 65535).default(WORKER_DEFAULTS.monitorPort),
    /** Address the monitor binds; anything but loopback needs monitorToken. */
    monitorListen: z
      .string()
      .regex(/^(?:[A-Za-z0-9.-]+|\[?[0-9A-Fa-f:.]+\]?)$/, 'must be a host name or an IP address')
      .default(WORKER_DEFAULTS.monitorListen),
    /** Token the monitor requires (page, API, Socket.IO); required when monitorListen is not loopback. */
    monitorToken: z.string().optional(),
    /** The gateway pipe's port (service replicas reached by the master); 0 = a free port. Default WORKER_DEFAULTS.gatewayPort, applied by compileWorkerSettings. */
    gatewayPort: zInt(0, 65535).optional(),
    /** Host service replicas. Default WORKER_DEFAULTS.services, applied by compileWorkerSettings. */
    services: zBool.optional(),
    /** Take exec sessions into this node's tasks (`hivemind exec`). Default WORKER_DEFAULTS.exec, applied by compileWorkerSettings. */
    exec: zBool.optional(),
    /**
     * Offer the egress network (docs/egress.md): tasks asking `--network egress` reach the internet
     * through NAT and nothing else. The worker installs its firewall at start; when it cannot, it
     * logs why and offers no egress.
     */
    allowEgress: zBool.default(false),
    /** Resolvers egress tasks use (comma-separated public IPv4). Default: the host's public nameservers. */
    egressDns: z.string().regex(/^[0-9.,\s]+$/, 'must be comma-separated IPv4 addresses').optional(),
    /** The egress network's subnet (the worker's own bridge). */
    egressSubnet: z.string().default(WORKER_DEFAULTS.egressSubnet),
    /** Bandwidth cap of each egress task, each way (e.g. 10mbit), in bits per second once compiled. Default: none. */
    egressRate: zParsed(z.string(), (v) => parseRate(v)).optional(),
    /** The egress network's Docker name (bridge and iptables chains are derived from it). */
    egressNetwork: z.string().default(WORKER_DEFAULTS.egressNetwork),
    /**
     * runc: tasks run under runc, and gVisor is offered as well when runsc works here (a task
     * asks for it with --isolation gvisor). gvisor: every task runs under gVisor, tasks that ask
     * for runc are refused, no service replicas; the worker does not start without a working runsc.
     */
    isolation: z.enum(ISOLATION_NAMES as [IsolationName, ...IsolationName[]]).default(WORKER_DEFAULTS.isolation),
    /**
     * The container engine's API socket: PATH, unix://PATH or tcp://HOST:PORT (Docker, or Podman
     * rootful or rootless). Default: DOCKER_HOST when set, else WORKER_DEFAULTS.engineSocket.
     */
    engineSocket: zParsed(z.string().max(4096), (v) => parseEngineSocket(v, 'engineSocket')).optional(),
  })
  .strict();

type Parsed = z.infer<typeof schema>;

/** The node's own settings (tokens, output cap, images, monitor, log) and the worker's, compiled. */
export type WorkerConfig = Omit<Parsed, 'dataDir' | 'name' | 'labels' | 'maxTasks' | 'cpus' | 'memory' | 'reportInterval' | 'drainTimeout' | 'handoverWait' | 'imageUnusedFor' | 'gatewayPort' | 'services' | 'exec' | 'engineSocket'> &
  CompiledWorkerSettings & {
    imageUnusedForMs: number;
    /** The container engine every engine client of the node is built from (--engine-socket, else DOCKER_HOST, else Docker's socket). */
    engineSocket: EngineSocket;
  };

const fields: Record<string, FieldSource> = {
  master: { env: 'HIVEMIND_MASTER', flag: 'master' },
  token: { env: 'HIVEMIND_TOKEN', flag: 'token' },
  dataDir: { env: 'HIVEMIND_DATA_DIR', flag: 'dataDir' },
  name: { env: 'HIVEMIND_NAME', flag: 'name' },
  labels: { env: 'HIVEMIND_LABELS', flag: 'label' },
  maxTasks: { env: 'HIVEMIND_MAX_TASKS', flag: 'maxTasks' },
  cpus: { env: 'HIVEMIND_CPUS', flag: 'cpus' },
  memory: { env: 'HIVEMIND_MEMORY', flag: 'memory' },
  reportInterval: { env: 'HIVEMIND_REPORT_INTERVAL', flag: 'reportInterval' },
  drainTimeout: { env: 'HIVEMIND_DRAIN_TIMEOUT', flag: 'drainTimeout' },
  handoverWait: { env: 'HIVEMIND_HANDOVER_WAIT', flag: 'handoverWait' },
  maxOutput: { env: 'HIVEMIND_MAX_OUTPUT', flag: 'maxOutput' },
  allowUnboundedOutput: { env: 'HIVEMIND_ALLOW_UNBOUNDED_OUTPUT', flag: 'allowUnboundedOutput' },
  allowUnenforcedLimits: { env: 'HIVEMIND_ALLOW_UNENFORCED_LIMITS', flag: 'allowUnenforcedLimits' },
  imageBudget: { env: 'HIVEMIND_IMAGE_BUDGET', flag: 'imageBudget' },
  imageUnusedFor: { env: 'HIVEMIND_IMAGE_UNUSED_FOR', flag: 'imageUnusedFor' },
  cacheMax: { env: 'HIVEMIND_CACHE_MAX', flag: 'cacheMax' },
  logLevel: { env: 'HIVEMIND_LOG_LEVEL', flag: 'logLevel' },
  logFile: { env: 'HIVEMIND_LOG_FILE', flag: 'logFile' },
  wgInterface: { env: 'HIVEMIND_WG_INTERFACE', flag: 'wgInterface' },
  monitorPort: { env: 'HIVEMIND_MONITOR_PORT', flag: 'monitorPort' },
  monitorListen: { env: 'HIVEMIND_MONITOR_LISTEN', flag: 'monitorListen' },
  monitorToken: { env: 'HIVEMIND_MONITOR_TOKEN', flag: 'monitorToken' },
  gatewayPort: { env: 'HIVEMIND_GATEWAY_PORT', flag: 'gatewayPort' },
  services: { env: 'HIVEMIND_SERVICES', flag: 'services' },
  exec: { env: 'HIVEMIND_EXEC', flag: 'exec' },
  allowEgress: { env: 'HIVEMIND_ALLOW_EGRESS', flag: 'allowEgress' },
  egressDns: { env: 'HIVEMIND_EGRESS_DNS', flag: 'egressDns' },
  egressSubnet: { env: 'HIVEMIND_EGRESS_SUBNET', flag: 'egressSubnet' },
  egressNetwork: { env: 'HIVEMIND_EGRESS_NETWORK', flag: 'egressNetwork' },
  egressRate: { env: 'HIVEMIND_EGRESS_RATE', flag: 'egressRate' },
  isolation: { env: 'HIVEMIND_ISOLATION', flag: 'isolation' },
  engineSocket: { env: 'HIVEMIND_ENGINE_SOCKET', flag: 'engineSocket' },
};

export function compileWorkerConfig(input: ConfigInput): WorkerConfig {
  const c = compileSection('worker', schema, fields, input);
  const { dataDir, name, labels, maxTasks, cpus, memory, reportInterval, drainTimeout, handoverWait, imageUnusedFor, gatewayPort, services, exec, engineSocket, ...node } = c;
  if (c.monitorPort !== 0) checkMonitorBinding(stripBrackets(c.monitorListen), c.monitorToken);
  return {
    ...node,
    imageUnusedForMs: imageUnusedFor,
    engineSocket: engineSocket ?? defaultEngineSocket(input.env ?? process.env, WORKER_DEFAULTS.engineSocket),
    ...compileWorkerSettings({
      dataDir: dataDir ?? join(hivemindHome(input.env), 'worker'),
      name,
      labels,
      maxTasks,
      cpus,
      memory,
      reportIntervalMs: reportInterval,
      drainTimeoutMs: drainTimeout,
      handoverWaitMs: handoverWait,
      gatewayPort,
      services,
      exec,
    }),
  };
}

/** The data cache's budget: --cache-max, else the default share of the data dir's free disk now. */
export function cacheBudgetBytes(cacheMax: number | undefined, freeBytes: number): number {
  return cacheMax ?? Math.floor(Math.max(0, freeBytes) * WORKER_DEFAULTS.cacheFreeShare);
}
