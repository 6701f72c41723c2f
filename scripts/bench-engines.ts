// Engine benchmark (issue 22): one no-op task (`true`) through the node's real task runner
// (DockerTaskRunner: create, start, wait, collect /output, remove) on Docker, Podman rootful and
// Podman rootless, in one run on this machine, rounds alternating the engines so a machine whose
// speed drifts moves all of them. Median per engine and its ratio to Docker's in the same run.
// Usage: npm run bench:engines   Knobs: BENCH_N (rounds, default 5), HM_TEST_ENGINES (which engines).
import { OutcomeKind } from '../src/protocol/gen/hivemind/v1/common.js';
import { fmtMs as fmt, median } from './bench-helpers.js';
import { removeScratch, runTask } from '../test/helpers/runner-task.js';
import { engineMissing, engineTargets, type EngineTarget } from '../test/helpers/engines.js';

const N = Number(process.env.BENCH_N ?? 5);
const LIMITS = { cpus: 1, memoryBytes: 64 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 };

async function once(engine: EngineTarget): Promise<number> {
  const t0 = performance.now();
  const { result } = await runTask({ command: ['true'], limits: LIMITS }, { engine });
  const ms = performance.now() - t0;
  if (result.outcome.kind !== OutcomeKind.OUTCOME_KIND_EXITED || result.outcome.exitCode !== 0) throw new Error(`${engine.name}: task failed: ${result.outcome.message}`);
  return ms;
}

async function main(): Promise<void> {
  const engines = engineTargets();
  for (const e of engines) {
    const why = engineMissing(e.name);
    if (why) throw new Error(why);
  }
  for (const e of engines) await once(e); // warm-up: image cache, first volume, the engine's own caches
  const times = new Map<string, number[]>(engines.map((e) => [e.name, []]));
  for (let i = 0; i < N; i++) for (const e of engines) times.get(e.name)!.push(await once(e));
  const docker = times.has('docker') ? median(times.get('docker')!) : undefined;
  console.log(`no-op task through DockerTaskRunner, median of ${N} (create → removed)`);
  console.log('| engine | median | ratio to docker | runs |');
  console.log('|---|---|---|---|');
  for (const [name, xs] of times) {
    const m = median(xs);
    console.log(`| ${name} | ${fmt(m)} | ${docker ? `${(m / docker).toFixed(2)}x` : '-'} | ${xs.map((x) => x.toFixed(0)).join(', ')} |`);
  }
}

main()
  .catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  })
  .finally(() => removeScratch());
