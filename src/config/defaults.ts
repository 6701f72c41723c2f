// Every default of the worker's, the master's and the monitor's settings, each written and
// documented once here. The worker's own settings take theirs in compileWorkerSettings
// (worker-settings.ts), for the CLI and Worker.create alike; the config schemas default the
// others; the master's compile() defaults what a program leaves out of Master.create.
import { DEFAULT_MAX_OUTPUT_BYTES } from '../protocol/result-bound.js';

const MiB = 1024 ** 2;
const HOUR_MS = 3_600_000;

/** A node silent for this many report intervals is offline (unless a node timeout is set). */
export const MISSED_REPORTS_OFFLINE = 3;

/**
 * The master's node timeout rule, written once for its config, its options and its registry: a
 * node silent this long is offline, MISSED_REPORTS_OFFLINE report intervals unless set.
 */
export function nodeTimeoutMs(reportIntervalMs: number, nodeTimeout?: number): number {
  return nodeTimeout ?? reportIntervalMs * MISSED_REPORTS_OFFLINE;
}

/** A node timeout shorter than one report interval would call nodes that report on time offline between two reports. */
export function nodeTimeoutTooShort(nodeTimeout: number, reportIntervalMs: number): boolean {
  return !(nodeTimeout >= reportIntervalMs);
}

/** The master's settings (config section "master", `hivemind master start`). */
export const MASTER_DEFAULTS = {
  /** gRPC listen address: loopback only (the admin service speaks plaintext). */
  listen: '127.0.0.1:7070',
  /** The interval workers report at: 30 s. */
  reportIntervalMs: 30_000,
  /** Attempts per task before a lost node fails it for good. */
  maxAttempts: 3,
  logLevel: 'info',
  /** Tunnel mode: the tunnel subnet; the master takes its first address. */
  wgSubnet: '10.8.0.0/24',
  /** Tunnel mode: the WireGuard interface name (the worker's default too). */
  wgInterface: 'hivemind0',
  /** Tunnel mode: the TLS enrollment endpoint, the only public service. */
  enrollListen: '0.0.0.0:7443',
  /** Tunnel mode: the node service's port on the master's tunnel address. */
  nodePort: 7070,
  /** Tunnel mode: workers peer through the master (hub), not with each other. */
  mesh: false,
  /** Largest data set `hivemind data put` may store: 64 GiB (a put declaring more is refused before any byte is kept). */
  maxDataBytes: 64 * 1024 ** 3,
  /**
   * The operations listener (/healthz, /readyz, /metrics; master/metrics/ops-http.ts): loopback, on
   * Prometheus exporters' customary port range. Elsewhere than loopback /metrics takes the admin
   * token; "off" disables it. Only `master start` defaults to it: a master built in a program
   * (Master.create) has it off unless asked.
   */
  metricsListen: '127.0.0.1:9464',
  /**
   * Threads that hold the gRPC connections of the node and admin services (master/rpc/): the
   * handlers and the state stay on the main thread, the HTTP/2 streams of 10,000 nodes and their
   * GC do not. 0: everything on the main thread. More than one share the port (Linux).
   */
  rpcThreads: 1,
} as const;

/** The most RPC threads a master may run (`--rpc-threads`). */
export const MAX_RPC_THREADS = 16;

/** The master's HTTP gateway to services (`--gateway-listen`, master/gateway/gateway.ts). */
export const GATEWAY_DEFAULTS = {
  /** Where it listens: loopback (TLS and a public address are a reverse proxy's job); "off" disables it. */
  listen: '127.0.0.1:8088',
  /** Requests (and upgraded connections) in flight through the gateway at once; past it 503. */
  maxRequests: 10_000,
  /** Of those, to one service; past it 429, so that one busy service cannot starve the others. */
  maxServiceRequests: 1_000,
  /** A client must have sent its whole request head within this: 10 s (slow-header clients are cut with 408). */
  headersTimeoutMs: 10_000,
  /** How often Node checks open connections against that timeout. */
  connectionsCheckIntervalMs: 1_000,
  /** A node's gateway pipe must connect and answer within this: 5 s. */
  dialTimeoutMs: 5_000,
  /** The longest request target (path and query) taken: 8 KiB; longer is 414. */
  maxPathBytes: 8 * 1024,
  /** Idle keep-alive connections from clients are closed after this: 5 s. */
  keepAliveTimeoutMs: 5_000,
} as const;

/** The local web monitor's settings. */
export const MONITOR_DEFAULTS = {
  /** 0 turns the monitor off. */
  port: 5001,
  /** Loopback only; any other address needs a monitor token. */
  host: '127.0.0.1',
} as const;

/** The worker's settings (config section "worker", `hivemind worker start`, `Worker.create`). */
export const WORKER_DEFAULTS = {
  /** Concurrent tasks. */
  maxTasks: 2,
  /** How long a drain (SIGTERM, `hivemind worker stop`) waits for running tasks before cancelling them: 10 min. */
  drainTimeoutMs: 10 * 60_000,
  /**
   * How long a drain keeps service replicas running for the master to hand them over: 30 s. The
   * master's surge gives up after 10 s unplaced, so a lone node stops its replicas after this,
   * not after the whole drain timeout.
   */
  handoverWaitMs: 30_000,
  /** Report interval when neither this worker nor its master sets one: the master's default. */
  reportIntervalMs: MASTER_DEFAULTS.reportIntervalMs,
  /** Cap on a task's /output tree: 1 GiB. */
  maxOutputBytes: DEFAULT_MAX_OUTPUT_BYTES,
  /** Refuse to start where /output cannot be bounded while a task runs (Docker Desktop). */
  allowUnboundedOutput: false,
  /** Refuse to start on an engine that cannot enforce CPU, memory or pids limits (rootless Podman on cgroup v1). */
  allowUnenforcedLimits: false,
  logLevel: MASTER_DEFAULTS.logLevel,
  /** Tunnel mode: the WireGuard interface name. */
  wgInterface: MASTER_DEFAULTS.wgInterface,
  /** Disk budget for the images this worker pulled: 20 GiB. */
  imageBudgetBytes: 20 * 1024 ** 3,
  /** A pulled image unused this long may be pruned when over the budget: 24 h. */
  imageUnusedForMs: 24 * HOUR_MS,
  /** The data cache's disk budget when --cache-max is not set: this share of the data dir's free disk at start. */
  cacheFreeShare: 0.5,
  monitorPort: MONITOR_DEFAULTS.port,
  monitorListen: MONITOR_DEFAULTS.host,
  /** Memory kept for the OS and the worker itself: tasks get total memory minus this, 512 MiB. */
  memoryReserveBytes: 512 * MiB,
  /** CPUs a task with no CPU limit is accounted as. */
  taskDefaultCpus: 1,
  /** Memory a task with no memory limit is accounted as: 512 MiB. */
  taskDefaultMemoryBytes: 512 * MiB,
  /** Stored resource samples are kept 24 h ... */
  sampleMaxAgeMs: 24 * HOUR_MS,
  /** ... and at most this many. */
  sampleMaxCount: 10_000,
  /** Live logs are flushed to the master at least this often. */
  logFlushMs: 250,
  /** Live log bytes held per task while the master is slow or away (older ones are dropped): 1 MiB. */
  logBufferBytes: MiB,
  /** How often leftovers of earlier runs (containers, volumes, spool files) are looked for: 10 min. */
  reclaimIntervalMs: 10 * 60_000,
  /**
   * The gateway pipe's TCP port (the master's gateway reaches this node's service replicas
   * through it), on the node's tunnel address, or 127.0.0.1 without a tunnel. 0 = a free port.
   */
  gatewayPort: 7947,
  /** Whether this node hosts service replicas (off: no gateway pipe, replica assignments refused). */
  services: true,
  /** --isolation: runc (gVisor offered too when it works here); gvisor forces every task under it. */
  isolation: 'runc' as 'runc' | 'gvisor',
  /** Whether this node takes exec sessions into its tasks (`hivemind exec`; off: each is refused, saying so). */
  exec: true,
  /** The egress network (--allow-egress): its Docker name and its own subnet, used by nothing else on the host. */
  egressNetwork: 'hivemind-egress',
  egressSubnet: '10.213.0.0/24',
  /**
   * The container engine's API socket when neither --engine-socket, HIVEMIND_ENGINE_SOCKET nor
   * DOCKER_HOST names one: Docker's. Podman: unix:///run/podman/podman.sock (rootful) or
   * unix://$XDG_RUNTIME_DIR/podman/podman.sock (rootless).
   */
  engineSocket: 'unix:///var/run/docker.sock',
} as const;
