// `hivemind run` benchmark (issue 20): a no-op task run attached, as a user times it, against a raw
// `docker run` in the same run on this machine. A master and a worker run as separate `hivemind`
// processes on loopback; each sample is the whole CLI process, start-up to exit:
//   A: hivemind run --no-result IMAGE -- true      (the checkout's CLI, as bin/hivemind runs it)
//   B: docker run --rm IMAGE true
// A and B alternate (A B A B ...) and the ratio is taken pair by pair, as farm-bench --vs does, so a
// machine whose speed drifts moves both sides of a pair. Also prints where A's time goes, from the
// task's own events (master clock) against the CLI's start and exit (same host, same clock).
// Usage: npm run bench:run   Knobs: BENCH_N (pairs, default 15).
import { execFile } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { AdminClient } from '../src/client/admin-client.js';
import { TaskState } from '../src/protocol/gen/hivemind/v1/common.js';
import { BENCH_IMAGE as IMAGE, fmtMs as fmt, median } from './bench-helpers.js';
import { runProcess } from '../test/helpers/cli-process.js';
import { ProcessCluster } from '../test/helpers/process-cluster.js';

const run = promisify(execFile);
const N = Number(process.env.BENCH_N ?? 15);
/** The CLI entry bin/hivemind runs (dist/src/cli/hivemind.js), from this build. */
const HIVEMIND = join(dirname(fileURLToPath(import.meta.url)), '..', 'src', 'cli', 'hivemind.js');

interface Sample {
  ms: number;
  /** Milliseconds from the CLI's start to each state, and to its exit. */
  at: Partial<Record<keyof typeof TaskState | 'exit', number>>;
}

async function rawDockerRun(): Promise<number> {
  const t0 = performance.now();
  await run('docker', ['run', '--rm', IMAGE, 'true']);
  return performance.now() - t0;
}

async function hivemindRun(cluster: ProcessCluster, client: AdminClient): Promise<Sample> {
  const startedAt = Date.now();
  const t0 = performance.now();
  const r = await runProcess(process.execPath, [HIVEMIND, 'run', '--no-result', IMAGE, '--', 'true'], { env: cluster.env, timeoutMs: 120_000, what: 'hivemind run' });
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`hivemind run exited ${r.code}: ${r.stderr}`);
  const id = /task ([0-9a-f]+)/.exec(r.stderr)?.[1];
  if (!id) throw new Error(`no task id in: ${r.stderr}`);
  const info = await client.getTask(id);
  const at: Sample['at'] = { exit: ms };
  for (const e of info.events) at[TaskState[e.state] as keyof typeof TaskState] ??= e.atMs - startedAt;
  return { ms, at };
}

/** Median of one step's span over the samples that have both ends. */
function span(samples: Sample[], from: keyof Sample['at'] | 'start', to: keyof Sample['at']): string {
  const xs = samples.map((s) => (s.at[to] ?? NaN) - (from === 'start' ? 0 : (s.at[from] ?? NaN))).filter(Number.isFinite);
  return xs.length ? fmt(median(xs)) : '-';
}

async function main(): Promise<void> {
  const say = (s: string) => console.log(s);
  say(`# HiveMind run benchmark, ${new Date().toISOString()}, node ${process.version}, ${(await run('nproc')).stdout.trim()} cores`);
  await rawDockerRun(); // warm up docker and the page cache
  const cluster = await ProcessCluster.start({ reportInterval: '30s', maxTasks: 4 });
  const client = AdminClient.connect(cluster.address, cluster.adminToken);
  try {
    await hivemindRun(cluster, client); // warm up the worker (image check, first task)
    const raw: number[] = [];
    const hm: Sample[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < N; i++) {
      const s = await hivemindRun(cluster, client);
      const d = await rawDockerRun();
      hm.push(s);
      raw.push(d);
      ratios.push(s.ms / d);
    }
    say(`\n## no-op task, attached (median of ${N} pairs, A B A B ...)`);
    say(`A  hivemind run --no-result ${IMAGE} -- true: ${fmt(median(hm.map((s) => s.ms)))} (min ${fmt(Math.min(...hm.map((s) => s.ms)))}, max ${fmt(Math.max(...hm.map((s) => s.ms)))})`);
    say(`B  docker run --rm ${IMAGE} true: ${fmt(median(raw))} (min ${fmt(Math.min(...raw))}, max ${fmt(Math.max(...raw))})`);
    say(`A/B: ${median(ratios).toFixed(2)}x (median of the pairs' ratios)`);
    say(`\nwhere A's time goes (medians; master clock against the CLI's start):`);
    say(`  CLI start -> task queued (start-up, connect, submit): ${span(hm, 'start', 'TASK_STATE_QUEUED')}`);
    say(`  queued -> accepted (placement, assignment delivery):   ${span(hm, 'TASK_STATE_QUEUED', 'TASK_STATE_ACCEPTED')}`);
    say(`  accepted -> running (image check, volumes, create):    ${span(hm, 'TASK_STATE_ACCEPTED', 'TASK_STATE_RUNNING')}`);
    say(`  running -> uploading (start, wait, logs, collect):     ${span(hm, 'TASK_STATE_RUNNING', 'TASK_STATE_UPLOADING')}`);
    say(`  uploading -> succeeded (upload, terminal update):      ${span(hm, 'TASK_STATE_UPLOADING', 'TASK_STATE_SUCCEEDED')}`);
    say(`  succeeded -> CLI exit (watch and log stream end):      ${span(hm, 'TASK_STATE_SUCCEEDED', 'exit')}`);
  } finally {
    client.close();
    await cluster.close();
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
