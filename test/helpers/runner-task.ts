// Runs one task through the real DockerTaskRunner and checks nothing of it stays on the host: shared
// by the runner's integration tests under runc (docker-task-runner.test.ts) and under gVisor
// (gvisor-runner.test.ts), which prove the same guarantees.
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { ensureTestImage } from './test-image.js';
import { PODMAN_ROOTLESS_OUTPUTS, taskHostIds, type EngineTarget } from './engines.js';
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
  /** The engine to run on (test/helpers/engines.ts); default Docker. */
  engine?: EngineTarget;
}

/** The engine API client for `target` (Docker's default socket when none is given). */
export function engineOf(target?: EngineTarget): DockerEngine {
  return target ? DockerEngine.create({ socket: { kind: 'unix', path: target.socketPath } }) : DockerEngine.create();
}

/**
 * The bounded /output filesystems for `target`, kept in `spool` (in the shared mount for rootless
 * Podman): Docker mounts the device itself, Podman gets a mount the worker made, its root owned
 * by the host ids of the task user.
 */
export async function outputVolumesOf(spool: string, target?: EngineTarget): Promise<LoopOutputVolumes> {
  const dir = outputFsDirOf(spool, target);
  if (!target || target.name === 'docker') return new LoopOutputVolumes(dir);
  if (target.user) {
    await mkdir(dir, { recursive: true, mode: 0o711 });
    scratch.push(dir);
  }
  return new LoopOutputVolumes(dir, undefined, undefined, taskHostIds(target), true);
}

/** Where outputVolumesOf(spool, target) keeps its images. */
export function outputFsDirOf(spool: string, target?: EngineTarget): string {
  return target?.user ? join(PODMAN_ROOTLESS_OUTPUTS, basename(spool)) : join(spool, 'output-fs');
}

/** Runs `spec` (the test image and small limits unless it says otherwise) to its end; asserts nothing is left. */
export async function runTask(spec: Partial<TaskSpec>, opts: RunOptions = {}): Promise<Run> {
  const engine = engineOf(opts.engine);
  const image = await ensureTestImage(opts.engine?.socketPath);
  const spool = opts.spool ?? (await scratchDir('hm-spool-'));
  const taskId = `it${process.pid}-${++seq}`;
  const runner = new DockerTaskRunner(engine, { nodeId: NODE_ID, spoolDir: spool, defaults: opts.defaults ?? {}, outputVolumes: await outputVolumesOf(spool, opts.engine) }, silentLogger());
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
