// The long-running commands (master start, worker start, dev) and the local ones (doctor,
// image build). Production wiring of real Docker, SQLite and gRPC happens here and in
// ../node-wiring.ts, nowhere else.
import { portOf } from '../../common/address.js';
import { tuneHeapForStreaming } from '../../common/heap-tuning.js';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { ensureDataDir } from '../../config/data-dir.js';
import { join } from 'node:path';
import type { Command } from 'commander';
import { registerWorkerCacheCommands } from './worker-cache-commands.js';
import { compileMasterConfig } from '../../config/master-config.js';
import { compileWorkerConfig } from '../../config/worker-config.js';
import { devClientFile, devDir, hivemindHome } from '../../config/paths.js';
import { removeLocalMaster, writeLocalMaster } from '../../config/local-master.js';
import { GATEWAY_DEFAULTS, MASTER_DEFAULTS, MISSED_REPORTS_OFFLINE, MONITOR_DEFAULTS, WORKER_DEFAULTS } from '../../config/defaults.js';
import { Master } from '../../master/master.js';
import { AdminClient } from '../../client/admin-client.js';
import { formatDoctor, runDoctor } from '../../doctor/doctor.js';
import { DockerEngine } from '../../runtime/docker-engine.js';
import { defaultEngineSocket, engineSocketText, parseEngineSocket, type EngineSocket } from '../../runtime/engine-socket.js';
import { ensureDevImage, DEV_IMAGE } from '../../runtime/dev-image.js';
import { holdShutdownSignals, installShutdownHandlers } from '../shutdown-signals.js';
import { createWorker } from '../node-wiring.js';
import { stopWorker, writePidFile } from '../pid-file.js';
import { withdrawStopRequest } from '../stop-request.js';
import { parseDuration } from '../../common/units.js';
import { printJson, type CliContext } from '../cli-context.js';
import { terminalSafe } from '../terminal-text.js';
import { EXIT_FAILURE } from '../exit-codes.js';
import { readFile } from 'node:fs/promises';
import { replaceForYoungGeneration } from '../master-young-generation.js';

type Ctx = () => CliContext;

/**
 * Resolves when the process got its shutdown signal(s) and everything closed, or when `stopWhen`
 * asks to stop (the same orderly shutdown, with the exit code it gives).
 */
function runUntilSignalled(
  ctx: CliContext,
  logger: ReturnType<CliContext['logger']>,
  shutdown: () => Promise<void>,
  force: () => void,
  stopWhen?: (stop: (code: number) => void) => void,
  stopRequestDir?: string,
): Promise<number> {
  return new Promise((resolve) => {
    const uninstall = installShutdownHandlers({ shutdown, forceShutdown: force }, logger, resolve, stopRequestDir);
    stopWhen?.((code) => {
      uninstall();
      shutdown().then(
        () => resolve(code),
        () => resolve(code),
      );
    });
  });
}

export function registerServerCommands(program: Command, ctx: Ctx, setExit: (code: number) => void): void {
  const master = program.command('master').description('the reference master');
  master
    .command('start')
    .description('run a master: node registry, FIFO scheduler, input/result store')
    .option('--listen <host:port>', `gRPC listen address (default ${MASTER_DEFAULTS.listen})`)
    .option('--data-dir <dir>', 'database, inputs, results, logs (default $HIVEMIND_HOME/master)')
    .option('--store <url>', 'keep the state in PostgreSQL: postgres://USER:PASSWORD@HOST:PORT/DATABASE (env HIVEMIND_STORE; default SQLite at <data dir>/master.db)')
    .option('--lease <duration>', 'with --store postgres://: how long the lease making this master the active one lasts; a second master on the same database is a standby and takes over within about this long (env HIVEMIND_LEASE; default 5s)')
    .option('--report-interval <duration>', 'report interval for nodes (default 30s)')
    .option('--node-timeout <duration>', `a node silent this long is offline and its tasks are requeued; at least the report interval (default ${MISSED_REPORTS_OFFLINE} report intervals)`)
    .option('--max-attempts <n>', `attempts per task when nodes are lost (default ${MASTER_DEFAULTS.maxAttempts})`)
    .option('--max-data <size>', `largest data set \`hivemind data put\` may store (default ${MASTER_DEFAULTS.maxDataBytes / 1024 ** 3}g)`)
    .option('--gateway-listen <host:port>', `HTTP gateway to services (/s/NAME/), plain HTTP: put a TLS reverse proxy in front for other hosts; "off" disables it (default ${GATEWAY_DEFAULTS.listen})`)
    .option('--metrics-listen <host:port>', `operations listener: GET /healthz, /readyz, /metrics (Prometheus); the admin token for /metrics off loopback; "off" disables it (default ${MASTER_DEFAULTS.metricsListen})`)
    .option('--rpc-threads <n>', `threads holding the gRPC connections of nodes and admin clients, so that their HTTP/2 work and garbage stay off the thread holding the queue; 0 keeps them on it; more than one share the port (Linux) (env HIVEMIND_RPC_THREADS; default ${MASTER_DEFAULTS.rpcThreads})`)
    .option('--wg-endpoint <host:port>', 'tunnel mode: public UDP address of this master\'s WireGuard interface')
    .option('--wg-subnet <cidr>', `tunnel mode: tunnel subnet (default ${MASTER_DEFAULTS.wgSubnet})`)
    .option('--wg-interface <name>', `tunnel mode: WireGuard interface name (default ${MASTER_DEFAULTS.wgInterface})`)
    .option('--enroll-listen <host:port>', `tunnel mode: TLS enrollment endpoint, the only public service (default ${MASTER_DEFAULTS.enrollListen})`)
    .option('--node-port <port>', `tunnel mode: port of the node service on the tunnel address (default ${MASTER_DEFAULTS.nodePort})`)
    .option('--mesh', 'tunnel mode: workers peer directly with each other instead of through the master')
    .option('--peer-masters <host:port,...>', 'tunnel mode, masters sharing one store: the other masters\' --wg-endpoint; join tokens and node tunnels list them (env HIVEMIND_PEER_MASTERS)')
    .option('--log-level <level>', 'trace|debug|info|warn|error')
    .action(async (o) => {
      const c = ctx();
      const cfg = compileMasterConfig({ file: c.file, filePath: c.filePath, fileText: c.fileText, env: c.env, flags: o });
      // The config is valid: now, before anything is opened, the process takes its young generation.
      replaceForYoungGeneration();
      tuneHeapForStreaming();
      const logger = c.logger(cfg.logLevel);
      // A master that lost its lease has already stopped serving and closed: the process exits
      // non-zero, and its supervisor starts it again, as a standby.
      let leaseLost: ((code: number) => void) | undefined;
      let lostBeforeWait = false;
      const m = await Master.create(
        { listenAddress: cfg.listen, dataDir: cfg.dataDir, store: cfg.store, leaseMs: cfg.leaseMs, reportIntervalMs: cfg.reportIntervalMs, nodeTimeoutMs: cfg.nodeTimeoutMs, maxAttempts: cfg.maxAttempts, maxDataBytes: cfg.maxDataBytes, gatewayListen: cfg.gatewayListen, metricsListen: cfg.metricsListen, rpcThreads: cfg.rpcThreads, ...(cfg.tunnel ? { tunnel: cfg.tunnel } : {}) },
        {
          logger,
          onLeaseLost: (reason) => {
            logger.error({ reason }, 'master lease lost: exiting so that this master restarts as a standby');
            if (leaseLost) leaseLost(EXIT_FAILURE);
            else lostBeforeWait = true;
          },
        },
      );
      const address = await m.start();
      // The admin commands on this host find this master without flags (the README's `token create` next).
      const pointer = await writeLocalMaster({ master: address, adminTokenFile: m.adminTokenPath, pid: process.pid }, c.env).catch((err: unknown) => {
        logger.warn({ err }, 'cannot leave the local master pointer: admin commands on this host need --master and --admin-token');
        return undefined;
      });
      logger.info({ address, adminTokenFile: m.adminTokenPath, ...(pointer ? { clientPointer: pointer } : {}) }, 'master ready');
      const code = await runUntilSignalled(c, logger, () => m.close(), () => undefined, (stop) => {
        leaseLost = stop;
        if (lostBeforeWait) stop(EXIT_FAILURE);
      });
      await removeLocalMaster(process.pid, c.env).catch(() => undefined);
      setExit(code);
    });

  const worker = program.command('worker').description('a worker node');
  registerWorkerCacheCommands(worker, ctx);
  worker
    .command('start')
    .description('run a worker: register with the master, report resources, run tasks in containers')
    .option('--master <host:port,...>', 'address of a development master, or several comma-separated masters sharing one store, tried in order (env HIVEMIND_MASTER); not needed with a join token')
    .option('--token <token>', 'join token (hmj1.…) or enrollment token, needed on first start only (env HIVEMIND_TOKEN)')
    .option('--wg-interface <name>', `tunnel mode: WireGuard interface name (default ${WORKER_DEFAULTS.wgInterface})`)
    .option('--data-dir <dir>', 'identity, history, spool (default $HIVEMIND_HOME/worker)')
    .option('--name <name>', 'display name (default: hostname)')
    .option('--label <k=v>', 'label (repeatable)', (v: string, acc: string[] = []) => [...acc, v])
    .option('--max-tasks <n>', `concurrent tasks (default ${WORKER_DEFAULTS.maxTasks})`)
    .option('--cpus <n>', 'CPU cores offered to tasks (default: all)')
    .option('--memory <size>', 'memory offered to tasks (default: total - 512m)')
    .option('--report-interval <duration>', 'resource report interval (default 30s)')
    .option('--drain-timeout <duration>', 'on SIGTERM, how long running tasks may finish (default 10m)')
    .option('--handover-wait <duration>', 'on SIGTERM, how long service replicas keep running for the master to start them elsewhere; they stop once this has passed and no batch task is left (default 30s)')
    .option('--max-output <size>', 'cap on a task\'s /output (default 1g)')
    .option('--allow-unbounded-output', 'where this host has no loop devices (Docker Desktop), start anyway with /output checked against its cap only after each task exits (env HIVEMIND_ALLOW_UNBOUNDED_OUTPUT)')
    .option('--allow-unenforced-limits', 'on an engine that cannot enforce CPU, memory or pids limits (rootless Podman on cgroup v1), start anyway, taking only tasks that set no limit, which then run without this node\'s default limits (env HIVEMIND_ALLOW_UNENFORCED_LIMITS)')
    .option('--image-budget <size>', 'disk budget for images this worker pulled; unused ones are pruned down to it (default 20g)')
    .option('--image-unused-for <duration>', 'a pulled image unused this long may be pruned (default 24h)')
    .option('--cache-max <size>', `disk budget of the data cache (data sets tasks mount); unused entries are evicted, least recently used first (default ${WORKER_DEFAULTS.cacheFreeShare * 100}% of the data dir's free disk at start; env HIVEMIND_CACHE_MAX)`)
    .option('--monitor-port <port>', `local web monitor port, 0 = off (default ${WORKER_DEFAULTS.monitorPort})`)
    .option('--monitor-listen <host>', `address the monitor binds (default ${WORKER_DEFAULTS.monitorListen}; others need --monitor-token)`)
    .option('--monitor-token <token>', 'token the monitor requires (env HIVEMIND_MONITOR_TOKEN)')
    .option('--gateway-port <port>', `port of the gateway pipe the master reaches service replicas through, on the tunnel address (or 127.0.0.1), 0 = a free port (default ${WORKER_DEFAULTS.gatewayPort}; env HIVEMIND_GATEWAY_PORT)`)
    // Both spellings, so that neither is a default that overrides the config file's.
    .option('--services', 'host service replicas (the default)')
    .option('--no-services', 'host no service replicas: no gateway pipe, replica assignments refused (env HIVEMIND_SERVICES=false)')
    .option('--exec', 'take exec sessions into this node\'s running tasks (the default)')
    .option('--no-exec', 'refuse every exec session into this node\'s tasks, saying so (env HIVEMIND_EXEC=false)')
    .option('--engine-socket <socket>', `the container engine's API socket: PATH, unix://PATH or tcp://HOST:PORT; Docker, or Podman rootful (unix:///run/podman/podman.sock) or rootless (default: DOCKER_HOST, else ${WORKER_DEFAULTS.engineSocket}; env HIVEMIND_ENGINE_SOCKET)`)
    .option('--isolation <runc|gvisor>', 'runc (default): tasks run under runc, gVisor offered too when runsc works here; gvisor: every task under gVisor, runc tasks refused, no service replicas (env HIVEMIND_ISOLATION)')
    .option('--allow-egress', 'offer the egress network: tasks asking --network egress reach the internet and nothing else (docs/egress.md; env HIVEMIND_ALLOW_EGRESS)')
    .option('--egress-dns <ip,...>', 'public resolvers for egress tasks (default: the host\'s public nameservers; env HIVEMIND_EGRESS_DNS)')
    .option('--egress-rate <rate>', 'bandwidth cap of each egress task, each way, e.g. 10mbit (default: none; env HIVEMIND_EGRESS_RATE)')
    .option('--egress-subnet <cidr>', `subnet of the egress network (default ${WORKER_DEFAULTS.egressSubnet})`)
    .option('--egress-network <name>', `Docker name of the egress network (default ${WORKER_DEFAULTS.egressNetwork})`)
    .option('--log-level <level>', 'trace|debug|info|warn|error')
    .option('--log-file <path>', 'write the log to this file (rotated at 16 MiB) instead of stderr')
    .action(async (o) => {
      const c = ctx();
      const cfg = compileWorkerConfig({ file: c.file, filePath: c.filePath, fileText: c.fileText, env: c.env, flags: o });
      tuneHeapForStreaming();
      const logger = c.logger(cfg.logLevel, cfg.logFile);
      ensureDataDir(cfg.dataDir);
      const releasePid = writePidFile(cfg.dataDir);
      withdrawStopRequest(cfg.dataDir); // one left from an earlier worker is not for this one
      // A SIGTERM while the worker probes its host (Docker, gVisor, the egress firewall) is held
      // and replayed once the handlers below are in, so it drains like one a moment later.
      const early = holdShutdownSignals();
      try {
        const node = await createWorker(cfg, logger).catch((err: unknown) => {
          early.drop();
          throw err;
        });
        // The signal handlers go in before start(): a SIGTERM while the worker starts (its gateway
        // pipe, its first call to the master) drains and stops it once start() has settled, instead
        // of killing it with the default action.
        let started: Promise<void> = Promise.resolve();
        const running = runUntilSignalled(
          c,
          logger,
          async () => {
            await started.catch(() => undefined);
            await node.close();
          },
          () => node.cancelAll(),
          (stop) =>
            // Removed by the master's operator: nothing left to do here; exit non-zero so a
            // supervisor does not restart it in a loop unnoticed.
            node.worker.once('removed', (reason) => {
              c.stderr.write(`hivemind: ${terminalSafe(reason)}; this worker stops. To rejoin, use a fresh data dir and a new join token.\n`);
              stop(EXIT_FAILURE);
            }),
          cfg.dataDir,
        );
        early.replay();
        started = node.worker.start();
        await started;
        setExit(await running);
      } finally {
        releasePid();
      }
    });

  worker
    .command('stop')
    .description('ask the running worker to drain and stop (again: cancel its tasks now); it removes its tunnel and leaves nothing behind')
    .option('--data-dir <dir>', 'the worker\'s data dir (default $HIVEMIND_HOME/worker)')
    .option('--timeout <duration>', 'how long to wait for it to exit', '15m')
    .action(async (o) => {
      const c = ctx();
      const dir = o.dataDir ?? join(hivemindHome(c.env), 'worker');
      const pid = await stopWorker(dir, parseDuration(o.timeout, '--timeout'));
      c.stdout.write(`worker ${pid} stopped\n`);
    });

  program
    .command('dev')
    .description('a master and a worker on loopback in one process, data in $HIVEMIND_HOME/dev')
    .option('--port <port>', 'master port on 127.0.0.1', String(portOf(MASTER_DEFAULTS.listen)))
    .option('--max-tasks <n>', 'concurrent tasks', String(WORKER_DEFAULTS.maxTasks))
    .option('--report-interval <duration>', 'resource report interval', '30s')
    .option('--monitor-port <port>', 'local web monitor port, 0 = off', String(MONITOR_DEFAULTS.port))
    .option('--log-level <level>', 'trace|debug|info|warn|error', WORKER_DEFAULTS.logLevel)
    .action(async (o) => {
      const c = ctx();
      const dir = devDir(c.env);
      tuneHeapForStreaming();
      const logger = c.logger(o.logLevel);
      const mcfg = compileMasterConfig({ env: {}, flags: { listen: `127.0.0.1:${o.port}`, dataDir: join(dir, 'master'), reportInterval: o.reportInterval, logLevel: o.logLevel } });
      // DOCKER_HOST as `worker start` honours it (the worker's config below reads no environment).
      const socket = defaultEngineSocket(c.env, WORKER_DEFAULTS.engineSocket);
      const engine = DockerEngine.create({ socket });
      const image = await ensureDevImage(engine, logger);
      const m = await Master.create(
        { listenAddress: mcfg.listen, dataDir: mcfg.dataDir, reportIntervalMs: mcfg.reportIntervalMs, maxAttempts: mcfg.maxAttempts, gatewayListen: mcfg.gatewayListen },
        { logger },
      );
      const address = await m.start();
      const adminToken = (await readFile(m.adminTokenPath, 'utf8')).trim();
      const admin = AdminClient.connect(address, adminToken);
      let token: string;
      try {
        token = (await admin.createToken({ ttlMs: 10 * 60_000, uses: 1 })).token;
      } finally {
        admin.close();
      }
      const wcfg = compileWorkerConfig({
        env: {},
        flags: { master: address, token, dataDir: join(dir, 'worker'), name: 'dev-worker', engineSocket: engineSocketText(socket), maxTasks: o.maxTasks, reportInterval: o.reportInterval, logLevel: o.logLevel, monitorPort: o.monitorPort },
      });
      const node = await createWorker(wcfg, logger, engine, { dev: true });
      await node.worker.start();
      await mkdir(dir, { recursive: true, mode: 0o700 });
      const clientFile = devClientFile(c.env);
      await writeFile(clientFile, JSON.stringify({ master: address, adminToken }, null, 2) + '\n', { mode: 0o600 });
      await chmod(clientFile, 0o600);
      c.stdout.write(
        [
          '',
          `HiveMind dev is up: master ${address}, worker ${node.worker.nodeId ?? ''}, data in ${dir}`,
          node.monitor ? `Monitor: ${node.monitor.url}` : 'Monitor: off',
          `Task image: ${image}. In another shell, try:`,
          '',
          `  hivemind submit --image ${image} --wait -- sh -c 'echo hello from $HIVEMIND_TASK_ID > /output/hello.txt'`,
          '  hivemind tasks',
          '  hivemind result <task-id> -o result.tar.gz --extract result/',
          '',
          '(from a checkout, run ./bin/hivemind). Ctrl-C drains and stops; a second Ctrl-C cancels running tasks.',
          '',
        ].join('\n'),
      );
      setExit(
        await runUntilSignalled(
          c,
          logger,
          async () => {
            await node.close();
            await m.close();
          },
          () => node.cancelAll(),
        ),
      );
    });

  program
    .command('doctor')
    .description('check Docker, WireGuard tools, GPUs, ports and the data dir; print how to fix each problem')
    .option('--data-dir <dir>', 'data dir to check (default $HIVEMIND_HOME)')
    .option('--engine-socket <socket>', 'the container engine to check, as `worker start --engine-socket` takes it (default: the worker\'s config, HIVEMIND_ENGINE_SOCKET, DOCKER_HOST, else Docker\'s)')
    .option('--json', 'print JSON')
    .action(async (o) => {
      const c = ctx();
      const results = await runDoctor({ dataDir: o.dataDir ?? hivemindHome(c.env), masterPort: portOf(MASTER_DEFAULTS.listen), monitorPort: MONITOR_DEFAULTS.port, ...configuredWorker(c, o.engineSocket) });
      if (o.json) printJson(c, results);
      else c.stdout.write(formatDoctor(results) + '\n');
      if (results.some((r) => r.status === 'fail')) setExit(EXIT_FAILURE);
    });

  const image = program.command('image').description('the local task image');
  image
    .command('build')
    .description(`build ${DEV_IMAGE} offline from the host's static busybox (no registry needed); prints the tag`)
    .action(async () => {
      const c = ctx();
      const tag = await ensureDevImage(DockerEngine.create(), c.logger('warn'));
      c.stdout.write(tag + '\n');
    });
}

/**
 * The worker's allowUnboundedOutput and engine socket as its config file, env and doctor's
 * --engine-socket set them, for doctor to check what `worker start` would use; a config that does
 * not compile is `worker start`'s to report, so the defaults here (a bad --engine-socket throws).
 */
function configuredWorker(c: CliContext, engineSocket: string | undefined): { allowUnboundedOutput: boolean; engineSocket: EngineSocket } {
  const flags = engineSocket !== undefined ? { engineSocket } : {};
  try {
    const w = compileWorkerConfig({ file: c.file, filePath: c.filePath, fileText: c.fileText, env: c.env, flags });
    return { allowUnboundedOutput: w.allowUnboundedOutput, engineSocket: w.engineSocket };
  } catch {
    return { allowUnboundedOutput: false, engineSocket: engineSocket !== undefined ? parseEngineSocket(engineSocket) : defaultEngineSocket(c.env, WORKER_DEFAULTS.engineSocket) };
  }
}
