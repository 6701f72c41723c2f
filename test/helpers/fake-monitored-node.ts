// A fake worker node for the monitor (the MonitoredNode view, events emitted by the test) with a
// real SQLite store, and a real data cache seeded with one used data set: shared by the monitor's
// integration test and its browser test.
import { createHash, randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import type { MonitoredNode } from '../../src/monitor/monitored-node.js';
import type { TunnelStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { DataCacheView, GatewayPipeView, ReplicaView, WorkerEvents } from '../../src/worker/contracts.js';
import { DataCache, type DataRef } from '../../src/worker/data-cache/data-cache.js';
import { WorkerStore } from '../../src/worker/store/worker-store.js';

type After = { after(fn: () => unknown): void };

export class FakeNode extends EventEmitter<WorkerEvents> implements MonitoredNode {
  nodeId = 'node-1';
  state = 'connected';
  stateReason: string | undefined = undefined;
  isPaused = false;
  startedAt = Date.now();
  hostFacts = { hostname: 'box', os: 'linux', osRelease: 'Debian 12', arch: 'x64', cpuCores: 2, cpuModel: 'cpu', memoryBytes: 1 << 30, diskBytes: 1 << 30, gpus: [], dockerVersion: '20.10' };
  budget = { maxTasks: 2, cpus: 2, memoryBytes: 1 << 30, gpuIndexes: [], taskDefaults: { cpus: 1, memoryBytes: 1 << 28 } };
  options = { masterAddress: '10.8.0.1:7070', name: 'box', workerVersion: '9.9.9' };
  dataCache: DataCacheView | undefined = undefined;
  tunnel: TunnelStatus | undefined = {
    interface: 'hivemind0', address: '10.8.0.2/24', masterEndpoint: '192.0.2.1:51820', latestHandshakeMs: Date.now() - 400_000,
    rxBytes: 10, txBytes: 20, state: 'stale', implementation: 'userspace',
  };
  execCounters = { started: 0, refused: 0, active: 0 };
  get accepting() {
    return !this.isPaused;
  }
  freeCapacity() {
    return { cpus: 2, memoryBytes: 1 << 30, gpuIndexes: [], taskSlots: 2 };
  }
  running: { taskId: string; attempt: number }[] = [];
  /** Service replicas the test puts on the node; `gateway` set when it hosts services. */
  replicaList: ReplicaView[] = [];
  gateway: GatewayPipeView | undefined = undefined;
  replicas() {
    return this.replicaList;
  }
  runningTasks() {
    return this.running;
  }
  pause() {
    this.isPaused = true;
  }
  resume() {
    this.isPaused = false;
  }
  cancelTask() {
    return false;
  }
  async tunnelStatus() {
    return this.tunnel;
  }
}

export async function monitorFixture(t: After) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-monitor-'));
  const store = WorkerStore.open(join(dir, 'worker.db'));
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, node: new FakeNode() };
}

/** A real data cache in a temp dir, fed from memory: one file data set, used twice (a miss, then a hit). */
export async function seededDataCache(t: After, dir: string): Promise<{ cache: DataCache; ref: DataRef }> {
  const bytes = randomBytes(300 * 1024);
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const ref: DataRef = { digest: sha(bytes), kind: 'file', sizeBytes: bytes.length };
  const cache = await DataCache.open({
    dir: join(dir, 'cache'),
    budgetBytes: 10 * 2 ** 20,
    source: {
      async *fetch(_ref, offset) {
        yield { offset, data: bytes.subarray(offset) };
      },
    },
    clock: systemClock,
    logger: silentLogger(),
    unpack: async () => {
      throw new Error('no directory data sets here');
    },
    hashEntry: async (path) => sha(await readFile(path)),
  });
  t.after(() => cache.close());
  const never = new AbortController().signal;
  (await cache.acquire(ref, 'task-a', never)).release();
  (await cache.acquire(ref, 'task-b', never)).release();
  return { cache, ref };
}

