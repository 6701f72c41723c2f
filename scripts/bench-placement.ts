// Placement at scale, in process: a real MasterStore (temp file) and TaskManager, fake command
// streams, 10,000 nodes and 100,000 queued GPU tasks no node can take. Prints the cost of a report,
// a submission and a placement (median µs), the longest event-loop block, RSS, and the one-pass
// placement the master used before (store.queuedTasks + placeTasks), measured on a slice of the
// queue and scaled to the whole (it is linear in the queue). Sizes: NODES=, TASKS= in the env.
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { systemClock } from '../src/common/clock.js';
import { silentLogger } from '../src/common/logger.js';
import type { BlobStore } from '../src/master/blob-store.js';
import { MasterEvents } from '../src/master/master-events.js';
import { MasterStore, type TaskRow } from '../src/master/master-store.js';
import { NodeRegistry } from '../src/master/registry.js';
import { demandOf, placeTasks } from '../src/master/scheduler.js';
import { TaskManager } from '../src/master/task-manager.js';
import { NodeFacts, ResourceReport, TaskSpec, TaskState } from '../src/protocol/gen/hivemind/v1/common.js';
import { median } from './bench-helpers.js';

const NODES = Number(process.env.NODES ?? 10_000);
const TASKS = Number(process.env.TASKS ?? 100_000);
const GiB = 1024 ** 3;

const us = (ms: number) => `${(ms * 1000).toFixed(1)} µs`;
const mib = (b: number) => `${(b / 1024 ** 2).toFixed(0)} MiB`;

function report(gpus: number, slots = 4): ResourceReport {
  return ResourceReport.fromPartial({ accepting: true, free: { cpus: 8, memoryBytes: 16 * GiB, gpuIndexes: [...Array(gpus).keys()], taskSlots: slots } });
}

function gpuTask(id: string, at: number): TaskRow {
  return {
    id, spec: TaskSpec.fromPartial({ image: 'hivemind/busybox:1', command: ['true'], limits: { cpus: 1, memoryBytes: GiB, gpus: 1 } }),
    state: TaskState.TASK_STATE_QUEUED, attempt: 1, maxAttempts: 3, nodeId: null, queueReason: 'waiting to be scheduled', outcome: undefined,
    inputSize: 0, inputSha256: '', result: undefined, cancelRequested: false, cancelReason: '', createdAt: at, updatedAt: at,
    startedAt: null, finishedAt: null, lastUpdateSeq: 0, excludedNodes: [],
  };
}

function timed(fn: () => void): number {
  const t0 = performance.now();
  fn();
  return performance.now() - t0;
}

async function main(): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-bench-placement-'));
  const store = MasterStore.open(join(dir, 'master.db'));
  const registry = new NodeRegistry(systemClock, 30_000);
  const latencies: number[] = [];
  const tm = new TaskManager(store, { discardResult: async () => undefined } as unknown as BlobStore, registry, new MasterEvents(), systemClock, silentLogger(), {
    onPlaced: (ms) => latencies.push(ms),
  });
  let sent = 0;
  const ids = Array.from({ length: NODES }, (_, i) => `node${String(i).padStart(6, '0')}`);
  store.transaction(() => {
    for (const id of ids) store.insertNode({ id, name: id, facts: NodeFacts.create({ maxTasks: 4 }), credentialHash: `h-${id}`, at: Date.now() });
  });
  for (const id of ids) {
    registry.onReport(id, report(0));
    registry.attach(id, { send: () => void sent++, close: () => undefined });
  }
  const t0 = Date.now();
  store.transaction(() => {
    for (let i = 0; i < TASKS; i++) {
      const t = gpuTask(`task${String(i).padStart(7, '0')}`, t0 + i);
      store.insertTask(t, { state: t.state, at: t.createdAt, nodeId: null, attempt: 1, message: 'submitted' });
    }
  });
  const loop = monitorEventLoopDelay({ resolution: 5 });
  loop.enable();
  const load0 = performance.now();
  await tm.start();
  const loadMs = performance.now() - load0;
  const loadBlock = loop.max / 1e6;
  const firstRound = timed(() => tm.schedule());
  console.log(`${NODES} nodes, ${TASKS} queued GPU tasks no node can take`);
  console.log(`queue loaded from the store in pages: ${loadMs.toFixed(0)} ms, longest block ${loadBlock.toFixed(1)} ms; first round (the class offered every node): ${firstRound.toFixed(0)} ms`);

  const reportCost: number[] = [];
  for (let i = 0; i < 5000; i++) {
    const id = ids[i % NODES]!;
    reportCost.push(timed(() => {
      const r = report(0);
      registry.onReport(id, r);
      store.recordReport(id, r, Date.now());
      tm.schedule();
    }));
    if (i % 500 === 0) await new Promise((r) => setImmediate(r));
  }
  const flush = timed(() => store.flushReports());
  console.log(`per report (registry, write-behind, placement round): median ${us(median(reportCost))}, max ${us(Math.max(...reportCost))}; flushing ${Math.min(5000, NODES)} nodes' reports: ${flush.toFixed(1)} ms`);

  const submitCost: number[] = [];
  for (let i = 0; i < 2000; i++) {
    const t = gpuTask(`late${i}`, Date.now());
    submitCost.push(timed(() => {
      tm.submit(t, 'submitted');
      tm.schedule();
    }));
  }
  console.log(`per submission (stored, queued, round): median ${us(median(submitCost))}`);

  const reasonCost = timed(() => tm.queueDepthByReason());
  console.log(`queue depth by reason (one class, computed over the fleet): ${reasonCost.toFixed(1)} ms; cached: ${us(timed(() => tm.queueDepthByReason()))}`);

  // Capacity frees up: a quarter of the fleet reports 4 GPUs in one burst; rounds run on the event loop.
  const gpuNodes = ids.slice(0, Math.floor(NODES / 4));
  const before = tm.counters.assignments;
  loop.reset();
  const burst0 = performance.now();
  for (const id of gpuNodes) registry.onReport(id, report(4));
  const want = Math.min(gpuNodes.length * 4, TASKS);
  while (tm.counters.assignments - before < want) await new Promise((r) => setImmediate(r));
  const burstMs = performance.now() - burst0;
  const placed = tm.counters.assignments - before;
  console.log(`burst: ${placed} placements in ${burstMs.toFixed(0)} ms = ${(placed / (burstMs / 1000)).toFixed(0)} placements/s, ${us(burstMs / placed)} per placement; ` +
    `longest event-loop block ${(loop.max / 1e6).toFixed(1)} ms`);

  // Tasks submitted while nodes have room: the time from entering the queue to ASSIGNED.
  latencies.length = 0;
  loop.reset();
  for (let i = 0; i < 2000; i++) {
    const t = gpuTask(`cpu${i}`, Date.now());
    t.spec = TaskSpec.fromPartial({ ...t.spec, limits: { cpus: 1, memoryBytes: GiB, gpus: 0 } });
    tm.submit(t, 'submitted');
    if (i % 100 === 99) await new Promise((r) => setTimeout(r, 1));
  }
  while (latencies.length < 2000) await new Promise((r) => setImmediate(r));
  latencies.sort((a, b) => a - b);
  console.log(`2000 CPU tasks submitted in bursts of 100 with nodes free: placement latency median ${median(latencies)} ms, p99 ${latencies[Math.floor(latencies.length * 0.99)]} ms, ` +
    `max ${latencies.at(-1)} ms; longest event-loop block ${(loop.max / 1e6).toFixed(1)} ms`);
  loop.disable();
  console.log(`RSS ${mib(process.memoryUsage().rss)}, heap used ${mib(process.memoryUsage().heapUsed)}; ${sent} commands sent`);

  // The old path: every pass read and parsed the whole queue and placed it over a copy of the fleet.
  const readAll = timed(() => void store.queuedTasks());
  const slice = store.queuedTasks().slice(0, 2000).map((t) => ({ id: t.id, demand: demandOf(t.spec), excludedNodes: t.excludedNodes }));
  const nodes = registry.schedulable().filter((n) => n.free.gpus === 0);
  const sliceMs = timed(() => void placeTasks(slice, nodes));
  const queued = TASKS - placed;
  const oldPass = readAll + (sliceMs * queued) / slice.length;
  console.log(`old path, one pass: reading the queue ${readAll.toFixed(0)} ms + placeTasks ${sliceMs.toFixed(0)} ms per ${slice.length} tasks over ${nodes.length} nodes ` +
    `= about ${(oldPass / 1000).toFixed(1)} s per pass for ${queued} queued (it ran on every report, update and submission)`);
  tm.close();
  store.close();
  await rm(dir, { recursive: true, force: true });
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
