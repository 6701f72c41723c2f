// The reference master: wires store, blob store, auth, registry, scheduler and the two gRPC
// services together, runs the offline check, and owns their lifecycle.
//
// ATTEMPT RULE. A task's `attempt` (1-based) is the fencing token of the work done on it. The
// master accepts updates, input downloads, result uploads and logs only from the node holding
// the current attempt (same attempt number AND same node id). When that node goes offline (silent
// for the node timeout, 3 report intervals by default) or resubscribes without the task, the attempt is given up: the task
// is requeued with attempt+1 (its partial/stored result discarded), or fails with outcome
// NODE_LOST once max_attempts attempts were used. Anything that arrives later for the old
// attempt is refused as superseded (UpdateTask answers superseded=true; uploads and downloads
// fail with FAILED_PRECONDITION), so a node that comes back cannot overwrite the new attempt.
// A REJECTED assignment keeps its attempt number (the work never started) and the rejecting
// node is excluded for that task; the node id check fences its late messages.
// A service replica (spec.service set) has no attempt limit: a lost node requeues it with
// attempt+1 however often, and a replica that ends otherwise is replaced by a fresh task (the
// service manager, with backoff), so a replica never fails its service for good.
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import type { StoreLocation } from './sql/sql-driver.js';
import { redactUrl } from './sql/sql-errors.js';
import { WalCheckpointer } from './sql/wal-checkpointer.js';
import { Server, ServerCredentials, type ServerOptions } from '@grpc/grpc-js';
import { InProcessServer, type RpcServer } from './rpc/rpc-server.js';
import { ThreadedServer } from './rpc/threaded-server.js';
import { execaRunner, type CommandRunner } from '../tunnel/command-runner.js';
import { encodeJoinToken, peerEnrollEndpoints } from '../tunnel/join-token.js';
import { parseSubnet } from '../tunnel/subnet.js';
import { createWireGuardTool } from '../tunnel/wireguard-factory.js';
import type { WireGuardTool } from '../tunnel/wireguard-tool.js';
import { EnrollService } from './enroll-service.js';
import { ensureTlsIdentity, type TlsIdentity } from './tls-identity.js';
import { TunnelHub } from './tunnel-hub.js';
import { DbHubKey, FileHubKey, SqlHubKeyTable, type HubKeySource } from './hub-key.js';
import { systemClock, type Clock } from '../common/clock.js';
import { isLoopbackHost, parseHostPort, splitHostPort } from '../common/address.js';
import { closeSteps } from '../common/close-steps.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import { GATEWAY_DEFAULTS, MASTER_DEFAULTS, MAX_RPC_THREADS, nodeTimeoutMs as defaultNodeTimeout, nodeTimeoutTooShort } from '../config/defaults.js';
import { silentLogger, type Logger } from '../common/logger.js';
import { insecureTransport, type Transport } from '../protocol/transport.js';
import { AdminServiceDefinition, DataServiceDefinition } from '../protocol/chunk-codec.js';
import { ExecService } from './exec-service.js';
import { SizeCappedEnrollService, SizeCappedNodeService } from './size-capped-services.js';
import { AdminService } from './admin-service.js';
import { DataFiles } from './data-files.js';
import { DataService } from './data-service.js';
import { DataStore } from './data-store.js';
import { MasterAuth } from './auth.js';
import { BlobStore, DEFAULT_LOG_MAX_BYTES } from './blob-store.js';
import { MasterEvents } from './master-events.js';
import { MasterStore } from './master-store.js';
import { NodeService } from './node-service.js';
import { NodeRegistry } from './registry.js';
import { TaskManager } from './task-manager.js';
import { inputArchiveBound } from '../protocol/result-bound.js';
import type { ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { GatewayDirectory, TrafficView } from './gateway/gateway-directory.js';
import { Gateway } from './gateway/gateway.js';
import { ServiceAdmin } from './service-admin.js';
import { ServiceDirectory } from './service-directory.js';
import { ServiceManager } from './service-manager.js';
import { ServiceStore } from './service-store.js';
import { grpcCallInterceptor } from './metrics/grpc-call-metrics.js';
import { MasterMetrics } from './metrics/master-metrics.js';
import { NodeStateBoard } from './metrics/node-states.js';
import { OpsHttpServer, type Readiness } from './metrics/ops-http.js';
import { TaskFlowMetrics } from './metrics/task-flow-metrics.js';
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { MasterLease } from './lease/master-lease.js';
import { SqlLeaseStore, type LeaseStore } from './lease/lease-store.js';
import { leaseTiming, type LeaseTiming } from './lease/lease-timing.js';
import { standbyGuard } from './lease/standby-guard.js';
import { PgDriver } from './sql/pg-driver.js';

/** Workers back off up to 30 s (plus jitter) while the master is away; this covers it. */
export const RESTART_GRACE_MS = 60_000;

/** Options of a master; those left out take MASTER_DEFAULTS (config/defaults.ts), as the config file does. */
export interface MasterOptions {
  /** host:port to listen on. Port 0 picks a free port (read it back from `master.address`). */
  listenAddress?: string;
  /** Holds master.db, admin.token, inputs/, results/, logs/ and data/ (data sets). Created (mode 0700) if missing. Required. */
  dataDir: string;
  /** Where the state is kept: PostgreSQL (config/master-config.ts compileStoreChoice). Default: SQLite at <dataDir>/master.db. */
  store?: StoreLocation;
  /** Report interval told to nodes. */
  reportIntervalMs?: number;
  /**
   * A node silent this long is offline and the attempts it holds are given up (requeued). At
   * least reportIntervalMs. Default MISSED_REPORTS_OFFLINE × reportIntervalMs.
   */
  nodeTimeoutMs?: number;
  /** Attempts per task before a lost node fails it with NODE_LOST (a submission may ask for other). */
  maxAttempts?: number;
  /** Cap of each task's stored log; the end is kept. Default 8 MiB. */
  logMaxBytes?: number;
  /** Largest input archive a submission may stream (refused past it). Default inputArchiveBound(): what a node's 1 GiB input cap unpacks from. */
  maxInputArchiveBytes?: number;
  /** Largest data set a put may store (refused at its header past it). Default 64 GiB. */
  maxDataBytes?: number;
  /** How often presence is checked. Default reportIntervalMs / 4, between 50 ms and 1 s. */
  offlineCheckIntervalMs?: number;
  /** How long close() lets open calls finish before cutting them. Default 2 000 ms. */
  shutdownGraceMs?: number;
  /**
   * host:port of the HTTP gateway to services (`/s/NAME/`), or "off". Port 0 picks a free port
   * (read it back from `master.gatewayUrl`). Plain HTTP: on another address than loopback, a TLS
   * reverse proxy belongs in front. Default GATEWAY_DEFAULTS.listen.
   */
  gatewayListen?: string;
  /** After a restart, how long nodes holding tasks have to reconnect before those are requeued. Default 60 s. */
  restartGraceMs?: number;
  /**
   * Tunnel mode: workers enroll over TLS on `enrollListen` (the only public service), get a
   * WireGuard peer on the hub, and reach the node service only on the master's tunnel address.
   * Without it the master is a loopback development master (`hivemind dev`).
   */
  tunnel?: {
    /** Public UDP host:port of WireGuard, as workers dial it (`--wg-endpoint`). */
    endpoint: string;
    /** Its port, with the endpoint's host, goes into join tokens. */
    enrollListen?: string;
    interfaceName?: string;
    subnet?: string;
    /** Port of the node service on the tunnel address. */
    nodePort?: number;
    mesh?: boolean;
    /**
     * The other masters sharing this store, by their public WireGuard endpoints (`--peer-masters`):
     * join tokens carry their enrollment endpoints and node tunnels their WireGuard endpoints.
     */
    peerEndpoints?: readonly string[];
  };
  /** The gateway's public base URL, named in ServiceInfo.endpoint (+ /s/NAME/). Default http://127.0.0.1:8088. */
  gatewayUrl?: string;
  /** How often every service's replicas are reconciled besides on task changes. Default 1 000 ms. */
  serviceReconcileIntervalMs?: number;
  /**
   * host:port of the operations listener (GET /healthz, /readyz, /metrics), or "off". Port 0 picks
   * a free port (read it back from `master.metricsUrl`). Off a loopback address /metrics takes the
   * admin token. Default "off" here; `hivemind master start` defaults to MASTER_DEFAULTS.metricsListen.
   */
  metricsListen?: string;
  /**
   * With PostgreSQL only (SQLite has a single master and no lease): how long the lease that makes
   * this master the active one lasts, by the database's clock; renewed every fifth of it. A standby
   * takes over within about this long after the active master dies. Default 5 000 ms, at least 1 000.
   */
  leaseMs?: number;
  /**
   * Threads holding the gRPC connections of the node service and the admin and data services
   * (master/rpc/threaded-server.ts); 0: the main thread holds them. The enrollment endpoint (TLS)
   * stays on the main thread. Default MASTER_DEFAULTS.rpcThreads.
   */
  rpcThreads?: number;
}

export interface MasterDeps {
  /** Tunnel mode only. Default: the platform's WireGuard tool. */
  wireguard?: WireGuardTool;
  /** Tunnel mode only (openssl, sysctl). Default: execa. */
  runner?: CommandRunner;
  /** Default: plaintext gRPC (loopback only). */
  transport?: Transport;
  /** Default: silent. */
  logger?: Logger;
  /** Default: the system clock. */
  clock?: Clock;
  /** The gateway's counters for ServiceInfo when no gateway runs here (tests). Default: the gateway's own. */
  traffic?: TrafficView;
  /** The services and tokens the gateway serves. Default: the master's own service directory (tests pass a fake). */
  gatewayDirectory?: GatewayDirectory;
  /** Queued tasks by the scheduler's reason code, for hivemind_master_tasks_queued_by_reason. Default: that series is not written. */
  queueDepthByReason?: () => ReadonlyMap<string, number>;
  /**
   * A further condition of /readyz once the master itself is ready (a standby master answers not
   * ready with its reason). Default: none.
   */
  readiness?: () => Readiness;
  /** Whether /metrics on the operations listener asks for the admin token. Default: unless it listens on loopback. */
  metricsNeedToken?: boolean;
  /** With PostgreSQL: opens the lease's own connection. Default: a PgDriver on the store's URL. */
  leaseStore?: () => LeaseStore;
  /**
   * With PostgreSQL: called once the master lost its lease, after it stopped serving and closed
   * (`hivemind master start` exits non-zero; a supervisor restarts it as a standby). Default: none.
   */
  onLeaseLost?: (reason: string) => void;
}

interface CompiledOptions {
  listenAddress: string;
  dataDir: string;
  store: StoreLocation;
  reportIntervalMs: number;
  nodeTimeoutMs: number;
  maxAttempts: number;
  logMaxBytes: number;
  maxInputArchiveBytes: number;
  maxDataBytes: number;
  offlineCheckIntervalMs: number;
  shutdownGraceMs: number;
  restartGraceMs: number;
  /** ServiceInfo.endpoint's base when set; else the gateway's own URL once it listens. */
  gatewayUrl: string | undefined;
  serviceReconcileIntervalMs: number;
  /** Undefined: off. */
  gateway: { host: string; port: number } | undefined;
  /** The operations listener; undefined: off. */
  metrics: { host: string; port: number } | undefined;
  /** PostgreSQL only: the lease's timing; undefined with SQLite (no lease, a single master). */
  lease: LeaseTiming | undefined;
  rpcThreads: number;
}

/** `--gateway-listen`, `--metrics-listen`: "off", or host:port (IPv6 in brackets). */
function compileListen(text: string, what: string, example: string): { host: string; port: number } | undefined {
  if (text === 'off') return undefined;
  const hp = parseHostPort(text);
  if (hp?.port === undefined || hp.port > 65535) throw new ConfigError(`master: ${what} listen address "${text}" is not host:port or off (e.g. ${example})`);
  return { host: hp.host, port: hp.port };
}

function compile(o: MasterOptions): CompiledOptions {
  if (!o.dataDir) throw new ConfigError('master: dataDir is required');
  const reportIntervalMs = o.reportIntervalMs ?? MASTER_DEFAULTS.reportIntervalMs;
  const maxAttempts = o.maxAttempts ?? MASTER_DEFAULTS.maxAttempts;
  if (!(reportIntervalMs > 0)) throw new ConfigError(`master: reportIntervalMs must be positive, got ${reportIntervalMs}`);
  const nodeTimeoutMs = defaultNodeTimeout(reportIntervalMs, o.nodeTimeoutMs);
  if (nodeTimeoutTooShort(nodeTimeoutMs, reportIntervalMs)) {
    throw new ConfigError(`master: nodeTimeoutMs (${nodeTimeoutMs}) must be at least reportIntervalMs (${reportIntervalMs}), or nodes reporting on time are called offline between two reports`);
  }
  if (!Number.isInteger(maxAttempts) || maxAttempts < 1) throw new ConfigError(`master: maxAttempts must be a whole number >= 1, got ${maxAttempts}`);
  const listenAddress = o.listenAddress ?? MASTER_DEFAULTS.listen;
  if (!/^.+:\d+$/.test(listenAddress)) throw new ConfigError(`master: listen address "${listenAddress}" is not host:port`);
  // This listener speaks plaintext gRPC (the admin service, and the node service without a tunnel):
  // it must not be reachable from other hosts.
  if (!isLoopbackHost(splitHostPort(listenAddress).host)) {
    throw new ConfigError(`master: --listen ${listenAddress} is not a loopback address; the admin${o.tunnel ? '' : ' and node'} service speak plaintext and stay on loopback${o.tunnel ? '' : ' (workers on other hosts join through the tunnel: pass --wg-endpoint HOST:51820)'}`);
  }
  const store: StoreLocation = o.store ?? { kind: 'sqlite', path: join(o.dataDir, 'master.db') };
  return {
    listenAddress,
    dataDir: o.dataDir,
    store,
    reportIntervalMs,
    nodeTimeoutMs,
    maxAttempts,
    logMaxBytes: o.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES,
    maxInputArchiveBytes: o.maxInputArchiveBytes ?? inputArchiveBound(),
    maxDataBytes: o.maxDataBytes ?? MASTER_DEFAULTS.maxDataBytes,
    offlineCheckIntervalMs: o.offlineCheckIntervalMs ?? Math.max(50, Math.min(1000, reportIntervalMs / 4)),
    shutdownGraceMs: o.shutdownGraceMs ?? 2000,
    restartGraceMs: o.restartGraceMs ?? RESTART_GRACE_MS,
    gatewayUrl: o.gatewayUrl,
    serviceReconcileIntervalMs: o.serviceReconcileIntervalMs ?? 1000,
    gateway: compileListen(o.gatewayListen ?? GATEWAY_DEFAULTS.listen, 'gateway', GATEWAY_DEFAULTS.listen),
    metrics: compileListen(o.metricsListen ?? 'off', 'metrics', MASTER_DEFAULTS.metricsListen),
    lease: store.kind === 'postgres' ? leaseTiming(o.leaseMs) : undefined,
    rpcThreads: compileRpcThreads(o.rpcThreads),
  };
}

/** The master's services: the manager (reconciler), its store, and the gateway's view of them. */
interface ServiceParts {
  manager: ServiceManager;
  store: ServiceStore;
  directory: ServiceDirectory;
  events: MasterEvents;
}

interface TunnelParts {
  hub: TunnelHub;
  nodeServer: RpcServer;
  enrollServer: Server;
  enrollListen: string;
  tls: TlsIdentity;
}

/** The master's own metrics and the listener serving them with its health (undefined: off). */
interface Observability {
  metrics: MasterMetrics;
  ops: OpsHttpServer | undefined;
  /** A further readiness condition (MasterDeps.readiness). */
  readiness: (() => Readiness) | undefined;
}

/**
 * Where the master is in its life, as /readyz tells it. 'standby' (PostgreSQL only): listening,
 * refusing every call (lease/standby-guard.ts) until it takes the lease; then 'starting' again
 * while it loads the state, and 'ready'.
 */
type Phase = 'created' | 'starting' | 'standby' | 'ready' | 'closing';

/** The lease of a master on PostgreSQL, and what to do once it is lost. */
interface LeaseParts {
  lease: MasterLease;
  onLost: ((reason: string) => void) | undefined;
}

/** The largest message any of the master's servers reads (RESOURCE_EXHAUSTED beyond). */
export const MAX_RECEIVED_MESSAGE_BYTES = 1024 * 1024;

export class Master {
  private boundAddress: string | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closing: Promise<void> | undefined;
  private gatewayBase: string | undefined;
  private metricsBase: string | undefined;
  private phase: Phase = 'created';
  /** Why the lease was lost (the master then stops serving and closes); undefined while it holds it. */
  private fenced: string | undefined;
  /** Loading the state after the lease was taken (settles, never rejects). */
  private activation: Promise<void> | undefined;
  /** Tunnel mode: whether this master brought its WireGuard interface up (a standby has not). */
  private hubUp = false;

  private constructor(
    private readonly opts: CompiledOptions,
    private readonly transport: Transport,
    private readonly log: Logger,
    private readonly store: MasterStore,
    private readonly auth: MasterAuth,
    private readonly registry: NodeRegistry,
    private readonly tasks: TaskManager,
    private readonly nodeService: NodeService,
    private readonly server: RpcServer,
    private readonly tunnel: TunnelParts | undefined,
    private readonly data: DataService,
    private readonly services: ServiceParts,
    private readonly gateway: Gateway | undefined,
    private readonly exec: ExecService,
    private readonly obs: Observability,
    private readonly leased: LeaseParts | undefined,
    private readonly checkpointer: WalCheckpointer | undefined,
  ) {}

  static async create(options: MasterOptions, deps: MasterDeps = {}): Promise<Master> {
    const opts = compile(options);
    const log = (deps.logger ?? silentLogger()).child({ component: 'master' });
    const clock = deps.clock ?? systemClock;
    await mkdir(opts.dataDir, { recursive: true, mode: 0o700 });
    // Read when scraped: the store and registry below exist by then.
    const nodeBoard = new NodeStateBoard();
    const masterMetrics = new MasterMetrics({
      nodeStates: () => nodeBoard.counts(store.countNodes(), registry.onlineNodeIds()),
      tasksQueued: () => store.countQueued(),
      // The scheduler's own count unless a test injects one; read when scraped, once the task manager exists.
      queueDepthByReason: deps.queueDepthByReason ?? (() => scheduler?.queueDepthByReason() ?? new Map()),
      // Read when scraped, once the servers exist: the admin listener's threads, and in tunnel mode the node service's.
      rpcThreadLag: async () => {
        const named = async (name: string, s: RpcServer | undefined) => (await (s?.threadLag() ?? Promise.resolve([]))).map((l) => ({ ...l, thread: `${name}-${l.thread}` }));
        return [...await named('rpc', master?.server), ...await named('node', master?.tunnel?.nodeServer)];
      },
    });
    const { checkpointer, where } = await startCheckpointer(opts.store, log, masterMetrics);
    let store: MasterStore;
    try {
      store = MasterStore.open(where, (op, seconds) => masterMetrics.dbTimed(op, seconds));
    } catch (err) {
      await checkpointer?.close();
      throw err;
    }
    let registry!: NodeRegistry;
    let scheduler: TaskManager | undefined;
    let dataStore: DataStore | undefined;
    let serviceStore: ServiceStore | undefined;
    let master: Master | undefined;
    let gateway: Gateway | undefined;
    try {
      const auth = await MasterAuth.create(opts.dataDir, store, clock);
      const blobs = await BlobStore.create(opts.dataDir, { logMaxBytes: opts.logMaxBytes });
      const events = new MasterEvents();
      registry = new NodeRegistry(clock, opts.reportIntervalMs, opts.nodeTimeoutMs);
      const taskFlow = new TaskFlowMetrics(masterMetrics);
      events.on('task', (t) => taskFlow.onTask(t));
      const onReport = (nodeId: string, r: ResourceReport) => {
        masterMetrics.reportReceived();
        nodeBoard.onReport(nodeId, r);
      };
      const tasks = new TaskManager(store, blobs, registry, events, clock, log, { onPlaced: (ms) => masterMetrics.taskPlaced(ms / 1000) });
      scheduler = tasks;
      dataStore = DataStore.open(opts.store);
      const dataFiles = await DataFiles.create(opts.dataDir);
      const common = { store, blobs, auth, registry, tasks, events, clock, log };
      // Opened before the node service: exec sessions resolve a service's replicas through it.
      serviceStore = ServiceStore.open(opts.store);
      const services0 = serviceStore;
      const exec = new ExecService({ auth, store, registry, replicaTasks: (name) => services0.replicaTasks(name), clock, log: log.child({ component: 'exec' }) });
      // No legitimate message a master receives comes near 1 MiB (chunks are 256 KiB, a spec at most
      // 256 KiB); grpc-js refuses a larger one from its length prefix instead of reading it whole.
      // Every call of every server counted where it ends, with its status (metrics/grpc-call-metrics.ts).
      // With PostgreSQL a standby refuses every call before any handler (after the metrics interceptor,
      // which counts the refusal); with SQLite there is no guard at all.
      const guard = opts.lease ? [standbyGuard({ serving: () => master?.serving ?? false, activeHolder: () => master?.activeHolder ?? 'another master' })] : [];
      // Channelz off: the master serves no channelz service, so its per-call and per-socket
      // trackers would be work on every call for nobody.
      const interceptors = [grpcCallInterceptor(masterMetrics, { now: () => performance.now() }), ...guard];
      const serverOptions: ServerOptions = { 'grpc.max_receive_message_length': MAX_RECEIVED_MESSAGE_BYTES, 'grpc.enable_channelz': 0, interceptors };
      const transport = deps.transport ?? insecureTransport;
      // The node and admin services: in RPC threads unless asked otherwise (or over another transport than plaintext, which the threads do not speak).
      const rpcServer = (): RpcServer => (opts.rpcThreads > 0 && transport === insecureTransport
        ? new ThreadedServer({ threads: opts.rpcThreads, interceptors, maxReceiveBytes: MAX_RECEIVED_MESSAGE_BYTES, log: log.child({ component: 'rpc' }), urgent: isAdminCall })
        : new InProcessServer(serverOptions, () => transport.serverCredentials(), log));
      const server = rpcServer();
      let tunnel: TunnelParts | undefined;
      let nodeService: NodeService;
      let joinToken: ((secret: string) => string) | undefined;
      if (options.tunnel) {
        const t = options.tunnel;
        const runner = deps.runner ?? execaRunner;
        const hub = await TunnelHub.create(
          { endpoint: t.endpoint, otherEndpoints: t.peerEndpoints ?? [], interfaceName: t.interfaceName ?? MASTER_DEFAULTS.wgInterface, subnet: t.subnet ?? MASTER_DEFAULTS.wgSubnet, nodePort: t.nodePort ?? MASTER_DEFAULTS.nodePort, mesh: t.mesh ?? MASTER_DEFAULTS.mesh, dataDir: opts.dataDir },
          { tool: deps.wireguard ?? createWireGuardTool(join(opts.dataDir, 'wg')), runner, store, key: hubKeySource(opts.store, opts.dataDir, clock), log },
        );
        const enrollListen = t.enrollListen ?? MASTER_DEFAULTS.enrollListen;
        const publicHost = splitHostPort(t.endpoint).host;
        const tls = await ensureTlsIdentity(opts.dataDir, publicHost, runner);
        const enrollEndpoint = `${publicHost}:${splitHostPort(enrollListen).port}`;
        const otherEndpoints = peerEnrollEndpoints(t.peerEndpoints ?? [], enrollListen);
        joinToken = (secret) => encodeJoinToken({ endpoint: enrollEndpoint, fingerprint: tls.fingerprint, secret, otherEndpoints });
        nodeService = new NodeService({
          ...common,
          dataFiles,
          removedData: dataStore,
          reportIntervalMs: opts.reportIntervalMs,
          exec,
          onReport,
          tunnel: { subnet: parseSubnet(hub.subnetCidr), ...(hub.mesh ? { meshPeers: () => hub.meshPeers() } : {}) },
        });
        const nodeServer = rpcServer();
        nodeServer.addService(SizeCappedNodeService, nodeService.handlers());
        const enrollServer = new Server(serverOptions);
        enrollServer.addService(SizeCappedEnrollService, new EnrollService({ store, auth, hub, clock, log }).handlers());
        tunnel = { hub, nodeServer, enrollServer, enrollListen, tls };
      } else {
        nodeService = new NodeService({ ...common, dataFiles, removedData: dataStore, reportIntervalMs: opts.reportIntervalMs, exec, onReport });
        server.addService(SizeCappedNodeService, nodeService.handlers());
      }
      const hub = tunnel?.hub;
      const heldData = dataStore;
      const manager = new ServiceManager({
        services: serviceStore,
        nodes: registry,
        replicas: {
          insert: (t) => {
            tasks.submit(t, `replica ${t.spec.service!.replica} of service ${t.spec.service!.service}`);
          },
          cancel: (taskId, reason) => void tasks.cancel(taskId, reason),
        },
        data: heldData,
        maxDataBytes: opts.maxDataBytes,
        clock,
        log: log.child({ component: 'services' }),
        reconcileIntervalMs: opts.serviceReconcileIntervalMs,
        // The gateway is built below (it reads the manager's directory): reached through this binding.
        onRemoved: (name) => gateway?.traffic.forgetService(name),
      });
      const services: ServiceParts = { manager, store: serviceStore, directory: new ServiceDirectory(serviceStore, registry, clock), events };
      // Built before the admin service: its traffic counters (gateway.traffic) feed ServiceInfo.
      // Its listener also serves the master's /metrics, to the admin token only.
      const metrics = {
        isAdminToken: (token: string) => auth.isAdminToken(token),
        services: () => services.store.serviceNames().flatMap((name) => {
          const s = services.store.getService(name);
          return s ? [{ name, wanted: s.removing ? 0 : s.replicas }] : [];
        }),
      };
      gateway = opts.gateway ? new Gateway({ directory: deps.gatewayDirectory ?? services.directory, logger: log, clock, listen: opts.gateway, metrics }) : undefined;
      const traffic = gateway?.traffic ?? deps.traffic;
      // The gateway's URL is known once it listens (port 0 is allowed): read when a ServiceInfo is built.
      const endpointBase = () => opts.gatewayUrl ?? master?.gatewayUrl ?? '';
      const serviceAdmin = new ServiceAdmin({ auth, manager, services: serviceStore, clock, log, gatewayUrl: endpointBase, withQueueReason: (t) => tasks.withQueueReason(t), ...(traffic ? { traffic } : {}) });
      const adminService = new AdminService({
        serviceAdmin,
        exec,
        ...common,
        maxAttempts: opts.maxAttempts,
        maxInputArchiveBytes: opts.maxInputArchiveBytes,
        data: dataStore,
        maxDataBytes: opts.maxDataBytes,
        ...(joinToken ? { joinToken } : {}),
        ...(hub ? { onNodeRemoved: async (nodeId: string) => { await hub.removePeer(nodeId); await nodeService.announceMeshRemoval(nodeId); } } : {}),
      });
      server.addService(AdminServiceDefinition, adminService.handlers());
      const data = new DataService({ store: dataStore, files: dataFiles, auth, clock, log, maxDataBytes: opts.maxDataBytes });
      server.addService(DataServiceDefinition, data.handlers());
      const gw = gateway;
      const ops = opts.metrics
        ? new OpsHttpServer({
          listen: opts.metrics,
          metricsNeedToken: deps.metricsNeedToken ?? !isLoopbackHost(opts.metrics.host),
          isAdminToken: (token) => auth.isAdminToken(token),
          readiness: () => master?.readiness() ?? { ready: false, reason: 'starting' },
          // The gateway's series follow the master's own: one body, each series written once.
          metrics: async () => `${await masterMetrics.render()}${gw ? gw.metricsText() : ''}`,
          log,
        })
        : undefined;
      let leased: LeaseParts | undefined;
      if (opts.lease && opts.store.kind === 'postgres') {
        const { url } = opts.store;
        const timing = opts.lease;
        // Its own connection, with a short statement timeout: a renewal that cannot finish well
        // within the lease is a failed renewal, not a stalled event loop.
        const openStore = deps.leaseStore ?? (() => new SqlLeaseStore(PgDriver.open(url, { timeoutMs: Math.max(500, timing.renewEveryMs) })));
        const holder = `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
        const lease = new MasterLease({
          openStore,
          holder,
          timing,
          log: log.child({ component: 'lease' }),
          onAcquired: () => master?.leaseAcquired(),
          onLost: (reason) => master?.leaseLost(reason),
        });
        store.setLeaseFence({ holder, epoch: () => lease.epoch });
        leased = { lease, onLost: deps.onLeaseLost };
      }
      master = new Master(opts, transport, log, store, auth, registry, tasks, nodeService, server, tunnel, data, services, gateway, exec, { metrics: masterMetrics, ops, readiness: deps.readiness }, leased, checkpointer);
      return master;
    } catch (err) {
      masterMetrics.close();
      serviceStore?.close();
      dataStore?.close();
      store.close();
      await checkpointer?.close();
      throw err;
    }
  }

  /** Binds the listen address and starts serving; returns the bound host:port. */
  async start(): Promise<string> {
    if (this.boundAddress) return this.boundAddress;
    // First, so that probes get /healthz, and /readyz's "starting", while the rest comes up.
    this.phase = 'starting';
    if (this.obs.ops) this.metricsBase = (await this.obs.ops.start()).url;
    const { listenAddress } = this.opts;
    const port = await this.server.listen(listenAddress);
    this.boundAddress = `${splitHostPort(listenAddress).host}:${port}`;
    // The URL's password is replaced: only where the state is goes to the log.
    const store = this.opts.store.kind === 'sqlite' ? this.opts.store.path : redactUrl(this.opts.store.url);
    if (this.leased) {
      // The rest (tunnel, gateway, the state) comes up once the lease is taken (leaseAcquired).
      this.phase = 'standby';
      this.log.info({ address: this.boundAddress, transport: this.transport.name, dataDir: this.opts.dataDir, store, leaseMs: this.opts.lease!.leaseMs }, 'master listening as a standby until it takes the lease');
      this.leased.lease.start();
      // The first try is made at once: a master that took the lease returns serving, as with SQLite.
      await this.activation;
      return this.boundAddress;
    }
    await this.activate();
    this.log.info({ address: this.boundAddress, transport: this.transport.name, dataDir: this.opts.dataDir, store }, 'master listening');
    return this.boundAddress;
  }

  /** Whether calls are served (with a lease: held, state loaded, not lost). */
  get serving(): boolean {
    return this.phase === 'ready' && this.fenced === undefined && (this.leased?.lease.holdsNow() ?? true);
  }

  /** Who is active, for a standby's refusals ("another master" once this one is closing). */
  get activeHolder(): string {
    const lease = this.leased?.lease;
    return lease && lease.current === 'standby' ? lease.holder : 'another master';
  }

  /** The lease was taken: load the state and serve, as after a restart. */
  leaseAcquired(): void {
    if (this.phase !== 'standby') return;
    this.phase = 'starting';
    this.activation = this.activate().then(
      () => this.log.info({ address: this.boundAddress, epoch: this.leased?.lease.epoch }, 'master active: serving'),
      (err: unknown) => this.leaseLost(`could not start serving after taking the lease: ${errorMessage(err)}`),
    );
  }

  /**
   * The lease was lost (refused, or not renewed in time): stop serving at once (the guard refuses
   * from this call on), end the streams and close; then tell the owner (the CLI exits non-zero).
   */
  leaseLost(reason: string): void {
    if (this.fenced !== undefined) return;
    this.fenced = reason;
    const onLost = this.leased?.onLost;
    void this.close().then(() => onLost?.(reason));
  }

  /** Everything a master that serves runs: the tunnel, the gateway, the restart's grace, the queue, the services. */
  private async activate(): Promise<void> {
    if (this.tunnel) {
      const { hub, nodeServer, enrollServer, enrollListen, tls } = this.tunnel;
      // Only the active master brings its hub up, with the peers as they are now (the same key:
      // the shared data dir's, so nodes see one peer whichever master is active).
      if (this.leased) hub.reloadPeers(this.store);
      // Before start(): a start that fails half-way still takes the interface down on close.
      this.hubUp = true;
      await hub.start();
      await nodeServer.listen(hub.nodeServiceAddress);
      await bind(enrollServer, enrollListen, ServerCredentials.createSsl(null, [{ private_key: Buffer.from(tls.keyPem), cert_chain: Buffer.from(tls.certPem) }], false));
      this.log.info({ nodeService: hub.nodeServiceAddress, enroll: enrollListen, fingerprint: tls.fingerprint, mesh: hub.mesh }, 'tunnel mode: node service on the tunnel only, enrollment on the public address');
    }
    // Nodes holding tasks get time to come back after a master restart: their reconnect backoff
    // grows to 30 s while the master is away, so one report period would requeue (and run twice)
    // tasks that simply finished meanwhile. If they do not return, their attempts are given up.
    if (this.gateway) {
      this.gatewayBase = (await this.gateway.start()).url;
      if (!isLoopbackHost(this.opts.gateway!.host)) this.log.warn({ url: this.gatewayBase }, 'the gateway speaks plain HTTP on a non-loopback address: service tokens cross the network in clear; put a TLS reverse proxy in front');
    }
    for (const t of this.store.liveTasksOnNodes()) this.registry.awaitReturn(t.nodeId!, this.opts.restartGraceMs);
    this.timer = setInterval(() => this.checkPresence(), this.opts.offlineCheckIntervalMs);
    this.timer.unref();
    // In pages, while the master already answers its nodes; placement starts once it is whole.
    this.tasks.start().catch((err: unknown) => this.log.error({ err: errorMessage(err) }, 'loading the task queue failed; placement waits for the next trigger'));
    this.services.manager.start(this.services.events);
    if (this.phase === 'starting') this.phase = 'ready';
  }

  /** The bound host:port (after start()). */
  get address(): string {
    if (!this.boundAddress) throw new Error('master not started');
    return this.boundAddress;
  }

  /**
   * Whether the master takes nodes and admin calls: its store open, gRPC listening and the
   * restart's recovery set up (start() done), not closing, and the injected condition met.
   */
  readiness(): Readiness {
    if (this.fenced !== undefined) return { ready: false, reason: `lease lost: ${this.fenced}` };
    if (this.phase === 'closing') return { ready: false, reason: 'shutting down' };
    if (this.phase === 'standby') return { ready: false, reason: `standby: master ${this.leased!.lease.holder} holds the lease` };
    if (this.phase !== 'ready') return { ready: false, reason: 'starting' };
    return this.obs.readiness?.() ?? { ready: true };
  }

  /** The operations listener's base URL (after start()); undefined when it is off. */
  get metricsUrl(): string | undefined {
    return this.metricsBase;
  }

  /** What the gateway reads of services, replicas, client tokens and nodes' gateway pipes. */
  get gatewayDirectory(): GatewayDirectory {
    return this.services.directory;
  }

  /** The gateway's base URL (after start()), e.g. http://127.0.0.1:8088; undefined when no gateway runs. */
  get gatewayUrl(): string | undefined {
    return this.gatewayBase;
  }

  /** Path of the admin token file (mode 0600) the CLI reads. */
  get adminTokenPath(): string {
    return this.auth.adminTokenPath;
  }

  /** Marks silent nodes offline and gives up their tasks. Called by the timer; public for tests. */
  checkPresence(): void {
    for (const nodeId of this.registry.sweep()) {
      this.log.warn({ nodeId }, 'node offline');
      try {
        this.tasks.nodeLost(nodeId);
      } catch (err) {
        this.log.error({ nodeId, err: errorMessage(err) }, 'requeueing the tasks of an offline node failed');
      }
    }
  }

  /** Idempotent: stops the timer, ends node streams, shuts the server down, closes the store. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const step = closeSteps((name, err) => this.log.warn({ step: name, err: errorMessage(err) }, 'master close step failed'));
    this.phase = 'closing';
    await step('timer', () => clearInterval(this.timer));
    await step('gateway', () => this.gateway?.close());
    await step('services', () => this.services.manager.close());
    await step('tasks', () => this.tasks.close());
    await step('exec sessions', () => this.exec.close());
    await step('node streams', () => this.nodeService.close());
    await step('server', () => this.server.close(this.opts.shutdownGraceMs));
    if (this.tunnel) {
      const { hub, nodeServer, enrollServer } = this.tunnel;
      await step('tunnel servers', async () => {
        enrollServer.forceShutdown();
        await nodeServer.close(0);
      });
      // A standby never brought the interface up: not its to take down.
      await step('tunnel', () => (this.hubUp ? hub.close() : undefined));
    }
    await step('data store', () => this.data.close());
    await step('service store', () => this.services.store.close());
    await step('store', () => this.store.close());
    // After every store: its connection is the last, so its close checkpoints and removes the WAL.
    await step('WAL checkpointer', () => this.checkpointer?.close());
    // After every write of this master: only then may the standby take over.
    await step('lease', () => this.leased?.lease.close());
    // Last: /readyz says "shutting down" through the whole close.
    await step('operations listener', () => this.obs.ops?.close());
    await step('metrics', () => this.obs.metrics.close());
    this.log.info('master closed');
  }
}

/** An operator's call (AdminService): its frames are handled before the nodes' (rpc/rpc-thread-link.ts). */
function isAdminCall(path: string): boolean {
  return path.startsWith('/hivemind.v1.AdminService/');
}

/** `rpcThreads`: a whole number from 0 (the main thread) to MAX_RPC_THREADS. */
function compileRpcThreads(n: number | undefined): number {
  const v = n ?? MASTER_DEFAULTS.rpcThreads;
  if (!Number.isInteger(v) || v < 0 || v > MAX_RPC_THREADS) throw new ConfigError(`master: rpcThreads must be a whole number from 0 (the main thread) to ${MAX_RPC_THREADS}, got ${v}`);
  return v;
}

/**
 * With SQLite in a file: checkpoints off the event loop (sql/wal-checkpointer.ts), and the stores'
 * connections opened without their own. When the thread cannot start, SQLite's automatic
 * checkpoints stay (the master works as before, with their stalls) and a warning says so.
 */
async function startCheckpointer(store: StoreLocation, log: Logger, metrics: MasterMetrics): Promise<{ checkpointer: WalCheckpointer | undefined; where: StoreLocation }> {
  if (store.kind !== 'sqlite' || store.path === ':memory:') return { checkpointer: undefined, where: store };
  try {
    const checkpointer = await WalCheckpointer.start(store.path, log, {
      onCheckpoint: (seconds) => metrics.dbTimed('wal_checkpoint', seconds),
      onCatchUp: (seconds) => metrics.dbTimed('wal_catch_up', seconds),
    });
    return { checkpointer, where: { ...store, externalCheckpoints: true } };
  } catch (err) {
    log.warn({ err: errorMessage(err) }, 'WAL checkpoints stay in the commits that cross SQLite\'s threshold (event-loop stalls at scale)');
    return { checkpointer: undefined, where: store };
  }
}

function bind(server: Server, address: string, creds: ServerCredentials): Promise<number> {
  return new Promise<number>((resolve, reject) => server.bindAsync(address, creds, (err, p) => (err ? reject(err) : resolve(p)))).catch((err: unknown) => {
    throw new ConfigError(`master: cannot listen on ${address}: ${errorMessage(err)}`, { cause: err });
  });
}

/**
 * The hub's key: with PostgreSQL the database's (read through a connection of its own, closed
 * once the key is known; the schema is migrated by then), else the data dir's file.
 */
function hubKeySource(store: StoreLocation, dataDir: string, clock: Clock): HubKeySource {
  if (store.kind === 'sqlite') return new FileHubKey(dataDir);
  return {
    privateKey: async () => {
      const db = PgDriver.open(store.url);
      try {
        return await new DbHubKey(new SqlHubKeyTable(db), dataDir, () => clock.now()).privateKey();
      } finally {
        db.close();
      }
    },
  };
}
