// gVisor benchmark (issue 22): the same tasks under gVisor (Docker's runsc runtime) against runc, in
// one run on this machine, through the node's real task runner (DockerTaskRunner: create, start,
// wait, collect /output, remove), each pair alternating (runc, gvisor, runc, gvisor ...) so a
// machine whose speed drifts moves both sides of a pair:
//   no-op:         `true`
//   CPU-bound:     a shell loop of 1,000,000 steps (no system calls), 1 CPU
//   syscall-bound: dd of 50,000 one-byte blocks (100,000 read/write calls), which gVisor's kernel
//                  serves in user space (on the ptrace platform, each one a round trip)
// Each timed whole (create → removed, what a task costs the node) and from the container's start
// to its exit as Docker records them (runsc starts its clock once the sandbox is up, so this part
// leaves out the sandbox's boot). Medians, and the median of the per-pair ratios gVisor / runc.
// Usage: npm run bench:gvisor   Knobs: BENCH_N (pairs, default 10).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Isolation, OutcomeKind, type TaskSpec } from '../src/protocol/gen/hivemind/v1/common.js';
import { fmtMs as fmt, median } from './bench-helpers.js';
import { removeScratch, runTask, sh } from '../test/helpers/runner-task.js';

const run = promisify(execFile);
const N = Number(process.env.BENCH_N ?? 10);
const LIMITS = { cpus: 1, memoryBytes: 256 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 300_000 };
const CPU_LOOP = sh('i=0; while [ $i -lt 1000000 ]; do i=$((i+1)); done; echo $i');
const SYSCALLS = ['dd', 'if=/dev/zero', 'of=/dev/null', 'bs=1', 'count=50000'];

interface Sample { totalMs: number; containerMs: number }

async function once(spec: Partial<TaskSpec>, isolation: Isolation): Promise<Sample> {
  const t0 = performance.now();
  const { result } = await runTask({ limits: LIMITS, ...spec, isolation });
  const totalMs = performance.now() - t0;
  if (result.outcome.kind !== OutcomeKind.OUTCOME_KIND_EXITED || result.outcome.exitCode !== 0) throw new Error(`task failed: ${result.outcome.message} ${result.logTail}`);
  return { totalMs, containerMs: result.outcome.durationMs };
}

/** N alternating pairs of one task; a table row per timing (whole run, container start → exit). */
async function pairs(name: string, spec: Partial<TaskSpec>): Promise<string[]> {
  await once(spec, Isolation.ISOLATION_RUNC); // warm-up, each runtime
  await once(spec, Isolation.ISOLATION_GVISOR);
  const runc: Sample[] = [];
  const gvisor: Sample[] = [];
  for (let i = 0; i < N; i++) {
    runc.push(await once(spec, Isolation.ISOLATION_RUNC));
    gvisor.push(await once(spec, Isolation.ISOLATION_GVISOR));
  }
  const row = (what: string, pick: (s: Sample) => number) => {
    const ratios = runc.map((a, i) => pick(gvisor[i]!) / pick(a));
    return `| ${name} | ${what} | ${fmt(median(runc.map(pick)))} | ${fmt(median(gvisor.map(pick)))} | ${median(ratios).toFixed(2)}× |`;
  };
  return [row('whole run (create → removed)', (s) => s.totalMs), row('container start → exit', (s) => s.containerMs)];
}

async function main(): Promise<void> {
  const say = (s: string) => console.log(s);
  const cores = (await run('nproc')).stdout.trim();
  const runsc = (await run('runsc', ['--version'])).stdout.split('\n')[0];
  say(`# gVisor benchmark, ${new Date().toISOString()}, node ${process.version}, ${cores} cores, ${runsc}, ${N} pairs`);
  say('');
  say('| task | time | runc (median) | gVisor (median) | gVisor / runc (median of pairs) |');
  say('|---|---|---|---|---|');
  for (const [name, command] of [['no-op `true`', ['true']], ['CPU-bound (1M-step shell loop)', CPU_LOOP], ['syscall-bound (dd, 100k calls)', SYSCALLS]] as const) {
    for (const line of await pairs(name, { command: [...command] })) say(line);
  }
}

main()
  .finally(() => removeScratch())
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
