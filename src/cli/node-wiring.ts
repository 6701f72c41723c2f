// Production wiring of a worker node: real Docker engine, SQLite store, gRPC connection (direct
// or through the WireGuard tunnel), system probe, image pruning and the web monitor, assembled in
// this one place from the compiled configuration, whose settings it passes on as they are.
import { statfs } from 'node:fs/promises';
import { join } from 'node:path';
import { ensureDataDir } from '../config/data-dir.js';
import { cacheBudgetBytes, type WorkerConfig } from '../config/worker-config.js';
import { DataCache } from '../worker/data-cache/data-cache.js';
import { hashEntry, unpackDataSet } from '../worker/data-cache/entry-files.js';
import { HttpDataSource } from '../worker/data-cache/http-data-source.js';
import { taskDataSource } from '../worker/data-cache/task-data-source.js';
import type { Logger } from '../common/logger.js';
import { systemClock } from '../common/clock.js';
import { stripBrackets } from '../common/address.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import { createWireGuardTool } from '../tunnel/wireguard-factory.js';
import { grpcEnroller } from '../worker/enroll-client.js';
import { WorkerTunnel } from '../worker/worker-tunnel.js';
import { assertNotRemoved } from '../worker/identity-file.js';
import { DockerEngine } from '../runtime/docker-engine.js';
import type { ContainerEngine } from '../runtime/container-engine.js';
import { DockerTaskRunner, type ImageUseRecorder } from '../runtime/docker-task-runner.js';
import { ImagePruner } from '../runtime/image-pruner.js';
import { IMAGE_PRUNE_INTERVAL_MS, ImagePruneSchedule } from '../runtime/image-prune-schedule.js';
import { imageUseLog } from '../runtime/image-use-log.js';
import { RUNNER_DEFAULTS } from '../runtime/container-spec.js';
import { DockerEgressNetworks, prepareEgress, type EgressAttachment } from '../runtime/egress-network.js';
import { ExecIptables } from '../runtime/egress-firewall.js';
import { egressDnsList } from '../runtime/egress-policy.js';
import { dockerClient } from '../runtime/engine-socket.js';
import { detectEngine, egressRefusal, gvisorRefusal } from '../runtime/engine-detect.js';
import { checkLimitsPolicy } from '../runtime/limits-policy.js';
import { detectHostPaths } from '../runtime/host-paths.js';
import { detectIsolations } from '../runtime/isolation-choice.js';
import { LoopOutputVolumes, outputFsDir } from '../runtime/output-volume.js';
import { chooseOutputVolumes } from '../runtime/output-volume-policy.js';
import { Worker } from '../worker/worker.js';
import { WorkerStore } from '../worker/store/worker-store.js';
import { SystemProbe } from '../worker/resources/system-probe.js';
import { GrpcMasterConnection } from '../worker/grpc-master-connection.js';
import { nodeFacts } from '../worker/node-facts.js';
import { MonitorPortInUseError, MonitorServer } from '../monitor/monitor-server.js';

export interface WorkerNode {
  worker: Worker;
  /** The local web monitor; undefined when turned off or its port was taken. */
  monitor: MonitorServer | undefined;
  /** Drain, then close everything: what the first SIGTERM does. */
  close(): Promise<void>;
  /** Cancel running tasks now: what a second SIGTERM does. */
  cancelAll(): void;
}

export interface CreateWorkerOptions {
  /**
   * `hivemind dev` (the user's own tasks on their machine): where this host cannot bound a task's
   * /output, run with /output checked only after exit instead of refusing to start, whatever
   * cfg.allowUnboundedOutput says.
   */
  dev?: boolean;
}

export async function createWorker(given: WorkerConfig, logger: Logger, engine: ContainerEngine = DockerEngine.create({ socket: given.engineSocket }), opts: CreateWorkerOptions = {}): Promise<WorkerNode> {
  ensureDataDir(given.dataDir);
  await assertNotRemoved(given.dataDir);
  // Docker, rootful or rootless Podman: what it enforces goes to the master with the node's facts.
  const id = await detectEngine(engine, given.engineSocket, logger.child({ component: 'engine' }));
  // An engine that drops limits: only with the operator's opt-in (runtime/limits-policy.ts).
  checkLimitsPolicy(id, given.engineSocket, given.allowUnenforcedLimits);
  // Before anything is set up: with --isolation gvisor and no working runsc the node does not start.
  const isolation = await detectIsolations(given.isolation, engine, logger.child({ component: 'isolation' }), undefined, gvisorRefusal(id));
  if (given.isolation === 'gvisor' && given.services) logger.info('no service replicas under --isolation gvisor (a replica\'s port is reached in its network namespace, which gVisor keeps to itself)');
  let cfg: WorkerConfig = { ...given, isolations: isolation.offered, engine: id.engine, unenforcedLimits: id.unenforced, ...(given.isolation === 'gvisor' ? { services: false } : {}) };
  // Podman does not mount a local-driver volume for a stopped container's archive: on Podman the
  // worker mounts each /output filesystem itself and it is bound in.
  const outputVolumes = await chooseOutputVolumes(new LoopOutputVolumes(outputFsDir(cfg.dataDir), undefined, undefined, undefined, id.engine !== 'docker'), opts.dev ? 'dev' : cfg.allowUnboundedOutput ? 'allowed' : 'refuse', logger);
  let worker: Worker | undefined;
  // A worker in its own container names its data sets to Docker by their host paths.
  const hostPath = await detectHostPaths(engine, logger.child({ component: 'runner' }));
  // Under --isolation gvisor every task runs under runsc, which has no network here: no egress.
  if (cfg.allowEgress && cfg.isolation === 'gvisor') logger.warn('--allow-egress is ignored under --isolation gvisor: gVisor tasks get no network (runsc runs with --network=none)');
  const noEgress = egressRefusal(id);
  if (cfg.allowEgress && noEgress) logger.warn({ reason: noEgress }, '--allow-egress is ignored: this node offers no egress');
  const egress = cfg.allowEgress && cfg.isolation !== 'gvisor' && !noEgress ? await offerEgress(cfg, logger.child({ component: 'egress' })) : undefined;
  cfg = { ...cfg, allowsEgress: egress !== undefined };
  // Set once the store is open, which is before any task can arrive.
  let imageUses: ImageUseRecorder | undefined;
  const executor = new DockerTaskRunner(
    engine,
    {
      // the node id is known once the worker has registered, before any task arrives
      nodeId: () => worker?.nodeId ?? 'unregistered',
      spoolDir: cfg.spoolDir,
      defaults: { ...RUNNER_DEFAULTS, maxOutputBytes: cfg.maxOutput, isolation: isolation.runDefault },
      images: { pulled: (image) => imageUses?.pulled(image), used: (image) => imageUses?.used(image) },
      outputVolumes,
      ...(hostPath ? { hostPath } : {}),
      egress,
    },
    logger.child({ component: 'runner' }),
  );
  const probe = new SystemProbe({
    dataDir: cfg.dataDir,
    clock: systemClock,
    logger: logger.child({ component: 'probe' }),
    dockerCheck: async () => {
      try {
        const v = await engine.version();
        return { ok: true, version: v.version };
      } catch (err) {
        return { ok: false, message: `Docker daemon not reachable: ${errorMessage(err)}; run \`hivemind doctor\`` };
      }
    },
  });
  const { masterAddresses, enrollmentToken, tunnel } = await reachMaster(cfg, probe, logger);
  let store: WorkerStore | undefined;
  let cache: DataCache | undefined;
  try {
    store = WorkerStore.open(join(cfg.dataDir, 'worker.db'));
    // Before the worker exists: its master session is reached through `worker` once it does
    // (a task's download starts only after the worker registered and took the task).
    cache = await openDataCache(cfg, logger, () => worker);
    return await assemble(cfg, logger, engine, {
      executor,
      probe,
      store,
      cache,
      masterAddresses,
      enrollmentToken,
      tunnel,
      setWorker: (w) => (worker = w),
      setImageUses: (u) => (imageUses = u),
    });
  } catch (err) {
    // A start that fails after the tunnel came up takes it down again, and closes what it opened.
    cache?.close();
    store?.close();
    await tunnel?.close().catch((e: unknown) => logger.error({ err: errorMessage(e) }, 'removing the tunnel failed'));
    throw err;
  }
}

/**
 * --allow-egress: the egress network and its firewall (docs/egress.md). A wrong setting (no public
 * resolver, a bad --egress-dns or --egress-subnet) stops the start: the operator asked for egress
 * and must fix it. A host that cannot put them in place (no iptables, no DOCKER-USER, not root)
 * still starts, offering no egress, and says why (so does `hivemind doctor`): its other tasks
 * never needed them.
 */
async function offerEgress(cfg: WorkerConfig, logger: Logger): Promise<EgressAttachment | undefined> {
  try {
    return await prepareEgress(
      { network: cfg.egressNetwork, subnet: cfg.egressSubnet, dns: egressDnsList(cfg.egressDns), masterAddresses: cfg.master ?? [], rateBps: cfg.egressRate },
      { engine: new DockerEgressNetworks(dockerClient(cfg.engineSocket)), iptables: new ExecIptables(), logger },
    );
  } catch (err) {
    if (err instanceof ConfigError) throw err;
    logger.error({ err: errorMessage(err) }, 'this node offers no egress');
    return undefined;
  }
}

interface Assembly {
  executor: DockerTaskRunner;
  probe: SystemProbe;
  store: WorkerStore;
  cache: DataCache;
  /** The masters in the order the node tries them (one in tunnel mode: the hub's end of the tunnel). */
  masterAddresses: string[];
  enrollmentToken: string | undefined;
  tunnel: WorkerTunnel | undefined;
  setWorker(w: Worker): void;
  setImageUses(u: ImageUseRecorder): void;
}

/** The worker, its image collection and its monitor, on a reachable master and an open store. */
async function assemble(cfg: WorkerConfig, logger: Logger, engine: ContainerEngine, a: Assembly): Promise<WorkerNode> {
  const { executor, probe, store, cache, masterAddresses, enrollmentToken, tunnel } = a;
  const http = new HttpDataSource();
  const imageGcLog = logger.child({ component: 'image-gc' });
  a.setImageUses(imageUseLog(store, systemClock, imageGcLog));
  // The config's worker settings are compiled already, under the names Worker.create takes.
  const w = await Worker.create(
    { ...cfg, masterAddress: masterAddresses[0]!, masterAddresses, enrollmentToken },
    {
      connectionFactory: (address) => new GrpcMasterConnection(address),
      executor,
      store,
      probe,
      clock: systemClock,
      logger,
      dataCache: cache,
      urlSize: (url, signal) => http.size(url, signal),
      ...(tunnel ? { tunnel } : {}),
    },
  );
  a.setWorker(w);
  const imageGc = new ImagePruneSchedule(
    new ImagePruner(engine, store, systemClock, { budgetBytes: cfg.imageBudget, unusedForMs: cfg.imageUnusedForMs }, imageGcLog),
    IMAGE_PRUNE_INTERVAL_MS,
    imageGcLog,
  );
  // First collection once registered (start() is idempotent), then every interval.
  w.on('state-changed', (c) => {
    if (c.to === 'connected') imageGc.start();
    // Tunnel mode with several masters: a lost master session points the tunnel at the next one.
    if (c.to === 'reconnecting' && tunnel) {
      tunnel.masterUnreachable(c.reason || 'lost the master').catch((err: unknown) => logger.warn({ err: errorMessage(err) }, 'moving the tunnel to the next master failed'));
    }
  });
  const monitor = await startMonitor(cfg, w, store, logger);
  return {
    worker: w,
    monitor,
    close: async () => {
      // Before the worker, which closes the store the collection reads.
      await imageGc.close();
      // The monitor shows the drain; it closes once the worker has.
      await w.close();
      // After the worker: its tasks' leases are released by then.
      try {
        cache.close();
      } catch (err) {
        logger.error({ err: errorMessage(err) }, 'closing the data cache failed');
      }
      await monitor?.close().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'closing the monitor failed'));
      // After the worker's last words to the master (they travel through the tunnel).
      await tunnel?.close().catch((err: unknown) => logger.error({ err: errorMessage(err) }, 'removing the tunnel failed'));
    },
    cancelAll: () => w.cancelAll('shutdown'),
  };
}

/**
 * The node's data cache under <dataDir>/cache: master-held data sets come through the worker's
 * master session, external ones over http(s); budget --cache-max or a share of the free disk.
 */
async function openDataCache(cfg: WorkerConfig, logger: Logger, worker: () => Worker | undefined): Promise<DataCache> {
  const dir = join(cfg.dataDir, 'cache');
  const fs = await statfs(cfg.dataDir);
  const budgetBytes = cacheBudgetBytes(cfg.cacheMax, fs.bavail * fs.bsize);
  const log = logger.child({ component: 'data-cache' });
  log.info({ dir, budgetBytes, configured: cfg.cacheMax !== undefined }, 'data cache');
  return DataCache.open({
    dir,
    budgetBytes,
    source: taskDataSource({
      withMaster: (signal, what, fn) => {
        const w = worker();
        if (!w) throw new Error('the worker is not running yet');
        return w.withMaster(signal, what, fn);
      },
      http: new HttpDataSource(),
      logger: log,
    }),
    clock: systemClock,
    logger: log,
    unpack: unpackDataSet,
    hashEntry,
  });
}

/**
 * Tunnel mode (a join token, or an earlier enrollment in this data dir): enrollment happens once;
 * every start brings the tunnel up and talks to the master only through it. Otherwise the
 * development master named by --master, with the enrollment token as given.
 */
async function reachMaster(cfg: WorkerConfig, probe: SystemProbe, logger: Logger): Promise<{ masterAddresses: string[]; enrollmentToken: string | undefined; tunnel?: WorkerTunnel }> {
  if (await WorkerTunnel.wanted(cfg.dataDir, cfg.token)) {
    const tunnel = await WorkerTunnel.open(
      { dataDir: cfg.dataDir, interfaceName: cfg.wgInterface },
      { tool: createWireGuardTool(join(cfg.dataDir, 'wg')), clock: systemClock, log: logger.child({ component: 'tunnel' }), enroller: grpcEnroller },
      { ...(cfg.token ? { token: cfg.token } : {}), ...(cfg.name ? { name: cfg.name } : {}), facts: async () => nodeFacts(await probe.facts(), cfg) },
    );
    await tunnel.up();
    tunnel.startHealthChecks();
    return { masterAddresses: [tunnel.masterGrpcAddress], enrollmentToken: undefined, tunnel };
  }
  if (!cfg.master?.length) {
    throw new ConfigError('--master is required (HOST:PORT of a development master), or pass the join token (hmj1.…) printed by `hivemind token create` on a tunnel-mode master');
  }
  return { masterAddresses: cfg.master, enrollmentToken: cfg.token };
}

/**
 * The monitor is a window on the node, not part of its work: a port already in use is reported
 * clearly and the worker runs on without it.
 */
async function startMonitor(cfg: WorkerConfig, worker: Worker, store: WorkerStore, logger: Logger): Promise<MonitorServer | undefined> {
  if (cfg.monitorPort === 0) return undefined;
  try {
    return await MonitorServer.start(
      { host: stripBrackets(cfg.monitorListen), port: cfg.monitorPort, ...(cfg.monitorToken ? { token: cfg.monitorToken } : {}) },
      { node: worker, store, clock: systemClock, logger },
    );
  } catch (err) {
    if (!(err instanceof MonitorPortInUseError)) throw err;
    logger.error({ err: err.message }, 'the web monitor is off; the worker runs without it');
    return undefined;
  }
}
