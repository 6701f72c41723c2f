// Runs one task through the real DockerTaskRunner and checks nothing of it stays on the host: shared
// by the runner's integration tests under runc (docker-task-runner.test.ts) and under gVisor
// (gvisor-runner.test.ts), which prove the same guarantees.
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { ensureTestImage } from './test-image.js';
import { DockerEngine } from '../../src/runtime/docker-engine.js';
import { LoopOutputVolumes } from '../../src/runtime/output-volume.js';
import { DockerTaskRunner } from '../../src/runtime/docker-task-runner.js';
import { nodeLabelFilters } from '../../src/runtime/labels.js';
import { silentLogger } from '../../src/common/logger.js';
import type { TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ExecutionPhase, ExecutionResult, TaskExecution } from '../../src/worker/contracts.js';
import type { RunnerDefaults } from '../../src/runtime/container-spec.js';

export const NODE_ID = `it-node-${process.pid}`;
let seq = 0;

/** Spool and input dirs the tests make; removeScratch() (in an after hook) deletes them. */
const scratch: string[] = [];
export async function scratchDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
}
export function removeScratch(): Promise<unknown> {
  return Promise.all(scratch.splice(0).map((d) => rm(d, { recursive: true, force: true })));
}

export interface Run {
  result: ExecutionResult;
  logs: { stdout: string; stderr: string };
  phases: ExecutionPhase[];
  taskId: string;
}

export interface RunOptions {
  inputFile?: string;
  abortAfterRunningMs?: number;
  abortReason?: string;
  defaults?: Partial<RunnerDefaults>;
  spool?: string;
  /** Called with the runner before the task starts (to sample its usage while it runs). */
  onRunner?: (runner: DockerTaskRunner, taskId: string) => void;
}

/** Runs `spec` (the test image and small limits unless it says otherwise) to its end; asserts nothing is left. */
export async function runTask(spec: Partial<TaskSpec>, opts: RunOptions = {}): Promise<Run> {
  const engine = DockerEngine.create();
  const image = await ensureTestImage();
  const spool = opts.spool ?? (await scratchDir('hm-spool-'));
  const taskId = `it${process.pid}-${++seq}`;
  const runner = new DockerTaskRunner(engine, { nodeId: NODE_ID, spoolDir: spool, defaults: opts.defaults ?? {}, outputVolumes: new LoopOutputVolumes(join(spool, 'output-fs')) }, silentLogger());
  opts.onRunner?.(runner, taskId);
  const ctl = new AbortController();
  const logs = { stdout: '', stderr: '' };
  const phases: ExecutionPhase[] = [];
  const exec: TaskExecution = {
    taskId,
    attempt: 1,
    spec: { image, command: [], env: new Map(), limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 }, maxOutputBytes: 0, data: [], network: 0, ...spec },
    gpuIndexes: [],
    signal: ctl.signal,
    onPhase: (p) => {
      phases.push(p);
      if (p === 'running' && opts.abortAfterRunningMs !== undefined) setTimeout(() => ctl.abort(opts.abortReason ?? 'cancelled'), opts.abortAfterRunningMs);
    },
    onPullProgress: () => {},
    onLog: (s, d) => (logs[s] += d.toString()),
  };
  if (opts.inputFile) exec.inputFile = opts.inputFile;
  const result = await runner.execute(exec);
  // Nothing of this task may remain on the host, once the removal behind the result has settled.
  // (With a result, the removal runs behind it; without one, it came first.)
  assert.notEqual(await result.cleanup, false, 'the removal of what the attempt made succeeded');
  assert.equal(result.leftovers, undefined, 'nothing was left');
  assert.deepEqual(await engine.listContainers(nodeLabelFilters(NODE_ID, taskId)), [], 'no container left');
  assert.deepEqual(await engine.listVolumes(nodeLabelFilters(NODE_ID, taskId)), [], 'no volume left');
  return { result, logs, phases, taskId };
}

export const sh = (script: string) => ['sh', '-c', script];

export async function tarEntries(gz: Buffer): Promise<Map<string, { type: string; body: string; linkname: string | null }>> {
  const extract = tarStream.extract();
  Readable.from([gunzipSync(gz)]).pipe(extract as unknown as NodeJS.WritableStream);
  const out = new Map<string, { type: string; body: string; linkname: string | null }>();
  for await (const e of extract) {
    const chunks: Buffer[] = [];
    for await (const c of e as AsyncIterable<Buffer>) chunks.push(c);
    out.set(e.header.name, { type: e.header.type, body: Buffer.concat(chunks).toString(), linkname: e.header.linkname });
  }
  return out;
}
