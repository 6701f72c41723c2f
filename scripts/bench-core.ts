// Core benchmark (issue: worker core). Measures, in one run on this machine, HiveMind against
// the physical floor (raw `docker run`) and prints ratios:
//   1. latency of a no-op task, submit -> result stored at the master, vs raw docker run (median)
//   2. throughput of 200 no-op tasks at concurrency 4 vs raw docker run at concurrency 4
//   3. a task writing 1 GiB to /output: worker peak RSS growth while the result streams, throughput
//   4. an idle connected worker: RSS and CPU% over 2 minutes
// Master and worker run as separate `hivemind` processes. Usage: npm run bench
// Knobs: BENCH_N (latency samples, 15), BENCH_TASKS (200), BENCH_IDLE_SECONDS (120), BENCH_OUTPUT_MIB (1024),
// BENCH_SECTIONS (which sections to run, default "1,2,3,4").
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { AdminClient } from '../src/client/admin-client.js';
import { TaskState } from '../src/protocol/gen/hivemind/v1/common.js';
import { BENCH_IMAGE as IMAGE, benchTask as hivemindTask, fmtMs as fmt, median, pool } from './bench-helpers.js';
import { ProcessCluster } from '../test/helpers/process-cluster.js';

const run = promisify(execFile);
const N = Number(process.env.BENCH_N ?? 15);
const TASKS = Number(process.env.BENCH_TASKS ?? 200);
const IDLE_S = Number(process.env.BENCH_IDLE_SECONDS ?? 120);
const OUTPUT_MIB = Number(process.env.BENCH_OUTPUT_MIB ?? 1024);
const SECTIONS = new Set((process.env.BENCH_SECTIONS ?? '1,2,3,4').split(',').map((x) => x.trim()));

async function rawDockerRun(): Promise<number> {
  const t0 = performance.now();
  await run('docker', ['run', '--rm', '--network', 'none', IMAGE, 'true']);
  return performance.now() - t0;
}

function procStatus(pid: number, key: string): number {
  const m = new RegExp(`^${key}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : 0;
}

function cpuTicks(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
  return Number(fields[11]) + Number(fields[12]); // utime + stime, in clock ticks (100/s)
}

type Say = (s: string) => void;

async function latency(client: AdminClient, say: Say): Promise<void> {
  const raw: number[] = [];
  const hm: number[] = [];
  for (let i = 0; i < N; i++) {
    raw.push(await rawDockerRun());
    hm.push((await hivemindTask(client, ['true'])).ms);
  }
  const rawMed = median(raw);
  const hmMed = median(hm);
  say(`\n## 1. no-op task latency (median of ${N}, interleaved)`);
  say(`raw docker run --rm --network none: ${fmt(rawMed)}`);
  say(`hivemind submit -> result stored:   ${fmt(hmMed)}`);
  say(`ratio: ${(hmMed / rawMed).toFixed(2)}x (target <= 1.5x)`);
}

async function throughput(client: AdminClient, say: Say): Promise<void> {
  let t0 = performance.now();
  await pool(TASKS, 4, () => rawDockerRun());
  const rawTput = TASKS / ((performance.now() - t0) / 1000);
  // All submitted at once: the worker's --max-tasks 4 is what bounds the concurrency.
  t0 = performance.now();
  await pool(TASKS, TASKS, () => hivemindTask(client, ['true']));
  const hmTput = TASKS / ((performance.now() - t0) / 1000);
  say(`\n## 2. ${TASKS} no-op tasks at concurrency 4`);
  say(`raw docker run: ${rawTput.toFixed(2)} tasks/s`);
  say(`hivemind (worker --max-tasks 4): ${hmTput.toFixed(2)} tasks/s`);
  say(`ratio: ${((hmTput / rawTput) * 100).toFixed(0)}% of raw (target >= 80%)`);
}

async function largeOutput(client: AdminClient, pid: number, say: Say): Promise<void> {
  const rssBefore = procStatus(pid, 'VmRSS');
  const hwmBefore = procStatus(pid, 'VmHWM');
  const big = await hivemindTask(client, ['sh', '-c', `dd if=/dev/urandom of=/output/big bs=1M count=${OUTPUT_MIB} 2>/dev/null`], { memoryBytes: 256 * 1024 ** 2 });
  const hwmAfter = procStatus(pid, 'VmHWM');
  const ev = (s: TaskState) => big.info.events.find((e) => e.state === s)?.atMs ?? 0;
  const collectMs = ev(TaskState.TASK_STATE_UPLOADING) - ev(TaskState.TASK_STATE_RUNNING) - (big.info.outcome?.durationMs ?? 0);
  const uploadMs = ev(TaskState.TASK_STATE_SUCCEEDED) - ev(TaskState.TASK_STATE_UPLOADING);
  const resultMiB = (big.info.outcome?.resultSize ?? 0) / 2 ** 20;
  say(`\n## 3. task writing ${OUTPUT_MIB} MiB of random data to /output`);
  say(`worker RSS before: ${(rssBefore / 2 ** 20).toFixed(1)} MiB; peak before: ${(hwmBefore / 2 ** 20).toFixed(1)} MiB; peak after: ${(hwmAfter / 2 ** 20).toFixed(1)} MiB`);
  say(`peak RSS growth: ${((hwmAfter - Math.max(rssBefore, hwmBefore)) / 2 ** 20).toFixed(1)} MiB over the earlier peak (target <= 64 MB)`);
  say(`end to end: ${fmt(big.ms)} for ${resultMiB.toFixed(0)} MiB of result (${(OUTPUT_MIB / (big.ms / 1000)).toFixed(1)} MiB/s of /output)`);
  say(`collect (/output -> safe tar -> gzip -> spool): ${fmt(collectMs)} (${(OUTPUT_MIB / (collectMs / 1000)).toFixed(1)} MiB/s); upload to the master: ${fmt(uploadMs)} (${(resultMiB / (uploadMs / 1000)).toFixed(1)} MiB/s)`);
}

async function idle(pid: number, say: Say): Promise<void> {
  say(`\n## 4. idle worker over ${IDLE_S} s (connected, reporting every 30 s)`);
  const rss: number[] = [];
  const ticks0 = cpuTicks(pid);
  const w0 = performance.now();
  for (let s = 0; s < IDLE_S; s += 5) {
    await new Promise((r) => setTimeout(r, 5000));
    rss.push(procStatus(pid, 'VmRSS'));
  }
  const cpuPct = ((cpuTicks(pid) - ticks0) / 100 / ((performance.now() - w0) / 1000)) * 100;
  say(`RSS: median ${(median(rss) / 2 ** 20).toFixed(1)} MiB, max ${(Math.max(...rss) / 2 ** 20).toFixed(1)} MiB; CPU: ${cpuPct.toFixed(2)}% of one core`);
}

async function main(): Promise<void> {
  const say: Say = (s) => console.log(s);
  say(`# HiveMind core benchmark, ${new Date().toISOString()}, node ${process.version}, ${(await run('nproc')).stdout.trim()} cores`);
  await rawDockerRun(); // warm up docker and the page cache
  const cluster = await ProcessCluster.start({ reportInterval: '30s', maxTasks: 4 });
  const client = AdminClient.connect(cluster.address, cluster.adminToken);
  try {
    await hivemindTask(client, ['true']);
    const pid = cluster.worker!.pid;
    if (SECTIONS.has('1')) await latency(client, say);
    if (SECTIONS.has('2')) await throughput(client, say);
    if (SECTIONS.has('3')) await largeOutput(client, pid, say);
    if (SECTIONS.has('4')) await idle(pid, say);
  } finally {
    client.close();
    await cluster.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
