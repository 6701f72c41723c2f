// Production wiring of a worker node: real Docker engine, SQLite store, gRPC connection and
// system probe, assembled in this one place from the compiled configuration.
import { join } from 'node:path';
import { mkdirSync } from 'node:fs';
import type { WorkerConfig } from '../config/worker-config.js';
import type { Logger } from '../common/logger.js';
import { systemClock } from '../common/clock.js';
import { errorMessage } from '../common/errors.js';
import { DockerEngine } from '../runtime/docker-engine.js';
import type { ContainerEngine } from '../runtime/container-engine.js';
import { DockerTaskRunner } from '../runtime/docker-task-runner.js';
import { RUNNER_DEFAULTS } from '../runtime/container-spec.js';
import { Worker } from '../worker/worker.js';
import { WorkerStore } from '../worker/store/worker-store.js';
import { SystemProbe } from '../worker/resources/system-probe.js';
import { GrpcMasterConnection } from '../worker/grpc-master-connection.js';
import { VERSION } from './version.js';

export interface WorkerNode {
  worker: Worker;
  /** Drain, then close everything: what the first SIGTERM does. */
  close(): Promise<void>;
  /** Cancel running tasks now: what a second SIGTERM does. */
  cancelAll(): void;
}

export async function createWorker(cfg: WorkerConfig, logger: Logger, engine: ContainerEngine = DockerEngine.create()): Promise<WorkerNode> {
  mkdirSync(cfg.dataDir, { recursive: true, mode: 0o700 });
  const spoolDir = join(cfg.dataDir, 'spool');
  let worker: Worker | undefined;
  const executor = new DockerTaskRunner(
    engine,
    {
      // the node id is known once the worker has registered, before any task arrives
      nodeId: () => worker?.nodeId ?? 'unregistered',
      spoolDir,
      defaults: { ...RUNNER_DEFAULTS, maxOutputBytes: cfg.maxOutput },
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
  const store = WorkerStore.open(join(cfg.dataDir, 'worker.db'));
  worker = await Worker.create(
    {
      masterAddress: cfg.master,
      enrollmentToken: cfg.token,
      dataDir: cfg.dataDir,
      name: cfg.name,
      labels: cfg.labels,
      maxTasks: cfg.maxTasks,
      reportIntervalMs: cfg.reportIntervalMs,
      cpuCap: cfg.cpus,
      memoryCapBytes: cfg.memory,
      drainTimeoutMs: cfg.drainTimeoutMs,
      spoolDir,
      workerVersion: VERSION,
    },
    {
      connectionFactory: (address) => new GrpcMasterConnection(address),
      executor,
      store,
      probe,
      clock: systemClock,
      logger,
    },
  );
  const w = worker;
  return {
    worker: w,
    close: () => w.close(),
    cancelAll: () => w.cancelAll('shutdown'),
  };
}
