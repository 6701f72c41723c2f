// Data set benchmark (issue 18). Measures, in one run on this machine, and prints ratios:
//   a. first use of a BENCH_DATA_MIB data set: the node's fetch into its cache vs the loopback
//      upload of the same bytes (`hivemind data put`)
//   b. a no-op task with that (now cached) data set mounted vs a no-op task without data (median of N)
//   c. four tasks started together on one uncached data set: bytes the node downloaded (= bytes the
//      master served it) against the data set's size: 1x, not 4x
// Master and worker run as separate `hivemind` processes (the worker's /metrics gives the bytes
// downloaded). Usage: npm run bench:data
// Knobs: BENCH_DATA_MIB (1024), BENCH_N (15), BENCH_SECTIONS (default "a,b,c"; b needs a), BENCH_MASTER_ARGS.
import { randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { AdminClient } from '../src/client/admin-client.js';
import { DataMount, TaskState } from '../src/protocol/gen/hivemind/v1/common.js';
import type { TaskInfo } from '../src/protocol/gen/hivemind/v1/admin.js';
import { freePort } from '../test/helpers/cli-process.js';
import { ProcessCluster } from '../test/helpers/process-cluster.js';
import { benchTask, fmtMs, median } from './bench-helpers.js';

const run = promisify(execFile);
const DATA_MIB = Number(process.env.BENCH_DATA_MIB ?? 1024);
const N = Number(process.env.BENCH_N ?? 15);
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? 'a,b,c').split(',').map((x) => x.trim()));
// Extra `master start` flags, e.g. BENCH_MASTER_ARGS='--rpc-threads 0' to compare the master's gRPC on its main thread.
const MASTER_ARGS = (process.env.BENCH_MASTER_ARGS ?? '').split(/\s+/).filter(Boolean);
const MIB = 2 ** 20;
const PUT_TIMEOUT_MS = 60 * 60_000;

type Say = (s: string) => void;

/** A file of random bytes (incompressible, like model weights), written 1 MiB at a time. */
async function randomFile(path: string, mib: number): Promise<void> {
  const out = createWriteStream(path);
  for (let i = 0; i < mib; i++) if (!out.write(randomBytes(MIB))) await new Promise<void>((r) => out.once('drain', () => r()));
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/**
 * A new data set of random bytes put with `hivemind data put`: its digest and the put's wall time
 * (reading, hashing and sending the file over loopback). The local file is deleted after.
 */
async function putRandom(cluster: ProcessCluster, dir: string, name: string): Promise<{ sha256: string; ms: number }> {
  const file = join(dir, `${name}.bin`);
  await randomFile(file, DATA_MIB);
  const t0 = performance.now();
  const r = await cluster.cli(['data', 'put', file, '--name', name], PUT_TIMEOUT_MS);
  const ms = performance.now() - t0;
  rmSync(file);
  const sha256 = /sha256:[0-9a-f]{64}/.exec(r.stdout)?.[0];
  if (r.code !== 0 || !sha256) throw new Error(`data put failed (${r.code}): ${r.stderr}${r.stdout}`);
  return { sha256, ms };
}

/** The worker's hivemind_data_downloaded_bytes_total (its /metrics on loopback). */
async function downloadedBytes(monitorPort: number): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${monitorPort}/metrics`)).text();
  const m = /^hivemind_data_downloaded_bytes_total (\S+)$/m.exec(text);
  if (!m) throw new Error('the worker exports no hivemind_data_downloaded_bytes_total: does it run with a data cache?');
  return Number(m[1]);
}

const mount = (sha256: string) => ({ data: [DataMount.fromPartial({ sha256, path: '/data' })] });

/** ACCEPTED -> the next state (PULLING, or RUNNING): the time the node spent fetching the task's data. */
function fetchMs(info: TaskInfo): number {
  const at = (s: TaskState) => info.events.find((e) => e.state === s)?.atMs;
  const accepted = at(TaskState.TASK_STATE_ACCEPTED);
  const next = at(TaskState.TASK_STATE_PULLING) ?? at(TaskState.TASK_STATE_RUNNING);
  if (accepted === undefined || next === undefined) throw new Error(`task ${info.taskId}: no ACCEPTED and PULLING/RUNNING events to time the fetch`);
  return next - accepted;
}

async function firstUse(client: AdminClient, cluster: ProcessCluster, dir: string, monitorPort: number, say: Say): Promise<string> {
  const up = await putRandom(cluster, dir, 'bench-a');
  const before = await downloadedBytes(monitorPort);
  const task = await benchTask(client, ['true'], { spec: mount(up.sha256) });
  const got = (await downloadedBytes(monitorPort)) - before;
  const fetch = fetchMs(task.info);
  const upRate = DATA_MIB / (up.ms / 1000);
  const fetchRate = got / MIB / (fetch / 1000);
  say(`\n## a. first use of a ${DATA_MIB} MiB data set`);
  say(`hivemind data put (hash + loopback upload): ${fmtMs(up.ms)}, ${upRate.toFixed(1)} MiB/s`);
  say(`node fetch into its cache (ACCEPTED -> PULLING, verified): ${fmtMs(fetch)} for ${(got / MIB).toFixed(0)} MiB, ${fetchRate.toFixed(1)} MiB/s`);
  say(`task end to end (submit -> result stored): ${fmtMs(task.ms)}`);
  say(`ratio: fetch at ${((fetchRate / upRate) * 100).toFixed(0)}% of the upload's throughput`);
  return up.sha256;
}

async function cachedMount(client: AdminClient, sha256: string, say: Say): Promise<void> {
  const plain: number[] = [];
  const withData: number[] = [];
  await benchTask(client, ['true'], { spec: mount(sha256) }); // the entry is verified once per worker run
  for (let i = 0; i < N; i++) {
    plain.push((await benchTask(client, ['true'])).ms);
    withData.push((await benchTask(client, ['true'], { spec: mount(sha256) })).ms);
  }
  const p = median(plain);
  const d = median(withData);
  say(`\n## b. no-op task, ${DATA_MIB} MiB data set cached and mounted vs no data (median of ${N}, interleaved)`);
  say(`without data: ${fmtMs(p)}`);
  say(`with the cached data set at /data: ${fmtMs(d)}`);
  say(`ratio: ${(d / p).toFixed(2)}x (target <= 1.1x)`);
}

async function fourAtOnce(client: AdminClient, cluster: ProcessCluster, dir: string, monitorPort: number, say: Say): Promise<void> {
  const up = await putRandom(cluster, dir, 'bench-c');
  const before = await downloadedBytes(monitorPort);
  const t0 = performance.now();
  const tasks = await Promise.all(Array.from({ length: 4 }, () => benchTask(client, ['sh', '-c', 'test -e /data'], { spec: mount(up.sha256) })));
  const allMs = performance.now() - t0;
  const got = (await downloadedBytes(monitorPort)) - before;
  say(`\n## c. four tasks started together on one uncached ${DATA_MIB} MiB data set`);
  say(`bytes the node downloaded (served by the master): ${(got / MIB).toFixed(1)} MiB for a ${DATA_MIB} MiB data set`);
  say(`ratio: ${(got / (DATA_MIB * MIB)).toFixed(2)}x the data set's size (target 1x, not 4x)`);
  say(`all four done in ${fmtMs(allMs)} (each: ${tasks.map((t) => fmtMs(t.ms)).join(', ')})`);
}

async function main(): Promise<void> {
  const say: Say = (s) => console.log(s);
  say(`# HiveMind data set benchmark, ${new Date().toISOString()}, node ${process.version}, ${(await run('nproc')).stdout.trim()} cores, BENCH_DATA_MIB=${DATA_MIB}`);
  const monitorPort = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'hm-bench-data-'));
  // Room for the two data sets of sections a and c in the node's cache.
  const cluster = await ProcessCluster.start({ reportInterval: '1s', maxTasks: 4, masterArgs: MASTER_ARGS, workerArgs: ['--monitor-port', String(monitorPort), '--cache-max', `${3 * DATA_MIB}m`] });
  const client = AdminClient.connect(cluster.address, cluster.adminToken);
  try {
    await benchTask(client, ['true']);
    let digest: string | undefined;
    if (SECTIONS.has('a') || SECTIONS.has('b')) digest = await firstUse(client, cluster, dir, monitorPort, say);
    if (SECTIONS.has('b') && digest) await cachedMount(client, digest, say);
    if (SECTIONS.has('c')) await fourAtOnce(client, cluster, dir, monitorPort, say);
  } finally {
    client.close();
    await cluster.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
