// Image GC against the real daemon and a real store: distinct small images (imported from
// tarballs of different random bytes, so each has its own id and size) are recorded as pulled,
// and the pruner must remove exactly the right ones and nothing else on the host.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { requireDocker } from '../helpers/requirements.js';
import { ensureTestImage } from '../helpers/test-image.js';
import { ManualClock } from '../../src/common/clock.js';
import { ImageInUseError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { DockerEngine } from '../../src/runtime/docker-engine.js';
import type { PullProgress } from '../../src/runtime/container-engine.js';
import { ensureDevImage } from '../../src/runtime/dev-image.js';
import { LoopOutputVolumes } from '../../src/runtime/output-volume.js';
import { DockerTaskRunner } from '../../src/runtime/docker-task-runner.js';
import { ImagePruner } from '../../src/runtime/image-pruner.js';
import { imageUseLog } from '../../src/runtime/image-use-log.js';
import { WorkerStore } from '../../src/worker/store/worker-store.js';
import { OutcomeKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { TaskExecution } from '../../src/worker/contracts.js';

const REPO = `hivemind-prune-test-${process.pid}`;
const HOUR = 3_600_000;
let busybox = '';

before(async () => {
  try {
    busybox = await ensureTestImage();
  } catch {
    // requireDocker() in each test reports the missing daemon.
  }
});

/** A rootfs of one file of random bytes: every image gets its own layer, id and size. */
function randomRootfs(bytes: number): Readable {
  const pack = tarStream.pack();
  pack.entry({ name: 'data.bin', mode: 0o644, mtime: new Date(0) }, randomBytes(bytes));
  pack.finalize();
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

async function importImage(engine: DockerEngine, name: string, bytes: number): Promise<{ ref: string; id: string; size: number }> {
  const ref = `${REPO}/${name}:1`;
  await engine.importImage(randomRootfs(bytes), `${REPO}/${name}`, '1');
  const info = await engine.inspectImage(ref);
  assert.ok(info, `${ref} was imported`);
  return { ref, id: info.id, size: info.sizeBytes };
}

/** Removes what a test made, forced: this is cleanup, not the code under test. */
async function forceRemove(engine: DockerEngine, refs: string[], containers: string[] = []): Promise<void> {
  for (const c of containers) await engine.removeContainer(c).catch(() => {});
  for (const r of refs) await engine.docker.getImage(r).remove({ force: true }).catch(() => {});
}

async function openStore(t: { after(fn: () => unknown): void }): Promise<WorkerStore> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-image-gc-'));
  const store = WorkerStore.open(join(dir, 'worker.db'));
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return store;
}

test('the pruner removes the least recently used pulled images down to the budget, and nothing else', async (t) => {
  if (!requireDocker(t)) return;
  const engine = DockerEngine.create();
  const store = await openStore(t);
  const clock = new ManualClock();
  const refs: string[] = [];
  try {
    const oldest = await importImage(engine, 'oldest', 1024 * 1024);
    refs.push(oldest.ref);
    const older = await importImage(engine, 'older', 2 * 1024 * 1024);
    refs.push(older.ref);
    const recent = await importImage(engine, 'recent', 3 * 1024 * 1024);
    refs.push(recent.ref);
    const operator = await importImage(engine, 'operator', 512 * 1024);
    refs.push(operator.ref);
    assert.equal(new Set([oldest.id, older.id, recent.id, operator.id]).size, 4, 'four distinct images');

    const now = clock.now();
    store.recordImagePulled(oldest.ref, now - 30 * HOUR);
    store.recordImagePulled(older.ref, now - 29 * HOUR);
    store.recordImagePulled(recent.ref, now - 28 * HOUR);
    store.recordImageUsed(older.ref, now - 26 * HOUR);
    store.recordImageUsed(recent.ref, now - 25 * HOUR);
    // The operator's image is used by tasks too, but was never pulled by this worker.
    store.recordImageUsed(operator.ref, now - 40 * HOUR);
    store.recordImageUsed(busybox, now - 40 * HOUR);

    // Room for the recent one only: the two older ones must go, oldest first.
    const pruner = new ImagePruner(engine, store, clock, { budgetBytes: recent.size + 1024, unusedForMs: 24 * HOUR }, silentLogger());
    const r = await pruner.prune(AbortSignal.timeout(60_000));

    assert.deepEqual(r.removed.map((x) => x.references), [[oldest.ref], [older.ref]]);
    assert.equal(r.freedBytes, oldest.size + older.size);
    assert.equal(r.keptBytes, recent.size);
    assert.equal(await engine.inspectImage(oldest.ref), undefined);
    assert.equal(await engine.inspectImage(older.ref), undefined);
    assert.equal((await engine.inspectImage(recent.ref))?.id, recent.id);
    assert.equal((await engine.inspectImage(operator.ref))?.id, operator.id, 'an image this worker did not pull is untouched');
    assert.ok(await engine.inspectImage(busybox), 'the busybox image is untouched');
    assert.deepEqual(store.pulledImages().map((x) => x.image), [recent.ref]);

    // Within the budget now: a second collection removes nothing.
    assert.deepEqual((await pruner.prune()).removed, []);
  } finally {
    await forceRemove(engine, refs);
  }
});

test('an image a stopped container still uses is skipped, never forced; the next one goes instead', async (t) => {
  if (!requireDocker(t)) return;
  const engine = DockerEngine.create();
  const store = await openStore(t);
  const clock = new ManualClock();
  const refs: string[] = [];
  const containers: string[] = [];
  try {
    const held = await importImage(engine, 'held', 1024 * 1024);
    refs.push(held.ref);
    const free = await importImage(engine, 'free', 1024 * 1024);
    refs.push(free.ref);
    store.recordImagePulled(held.ref, clock.now() - 2 * HOUR);
    store.recordImagePulled(free.ref, clock.now() - HOUR);
    // Another agent's container, created and never started: Docker must refuse the removal.
    containers.push(
      await engine.createContainer({
        name: `${REPO}-holder`, Image: held.ref, Cmd: ['/data.bin'], Env: [], Labels: {}, User: '65534:65534', NetworkDisabled: true,
        AttachStdin: false, AttachStdout: false, AttachStderr: false, Tty: false, OpenStdin: false,
        HostConfig: { NetworkMode: 'none' } as never,
      }),
    );

    const r = await new ImagePruner(engine, store, clock, { budgetBytes: 0, unusedForMs: 0 }, silentLogger()).prune(AbortSignal.timeout(60_000));

    assert.deepEqual(r.removed.map((x) => x.id), [free.id]);
    assert.equal(r.keptBytes, held.size);
    assert.equal((await engine.inspectImage(held.ref))?.id, held.id, 'the held image is still there');
    assert.equal((await engine.inspectContainer(containers[0]!)).id, containers[0], 'and so is the container');
    assert.deepEqual(store.pulledImages().map((x) => x.image), [held.ref], 'still recorded: it goes once the container is gone');
    await assert.rejects(engine.removeImage(held.ref), (err: unknown) => err instanceof ImageInUseError && /container/.test(err.message));
  } finally {
    await forceRemove(engine, refs, containers);
  }
});

/** A DockerEngine whose registry is offline: a pull builds the image locally instead. */
class LocalRegistryEngine extends DockerEngine {
  readonly pulls: string[] = [];

  override async pullImage(image: string, onProgress: (p: PullProgress) => void, signal?: AbortSignal): Promise<void> {
    this.pulls.push(image);
    const at = image.lastIndexOf(':');
    await ensureDevImage(this, silentLogger(), { repo: image.slice(0, at), tag: image.slice(at + 1), ...(signal ? { signal } : {}) });
    onProgress({ currentBytes: 1, totalBytes: 1 });
  }
}

test('the runner records what it pulled and what tasks used; the pruner then takes only the pulled image', async (t) => {
  if (!requireDocker(t)) return;
  const engine = new LocalRegistryEngine(DockerEngine.create().docker);
  const store = await openStore(t);
  const clock = new ManualClock();
  const spool = await mkdtemp(join(tmpdir(), 'hm-spool-'));
  t.after(() => rm(spool, { recursive: true, force: true }));
  const pulledRef = `${REPO}/pulled:1`;
  const runner = new DockerTaskRunner(engine, { nodeId: `image-gc-${process.pid}`, spoolDir: spool, images: imageUseLog(store, clock, silentLogger()), outputVolumes: new LoopOutputVolumes(join(spool, 'output-fs')) }, silentLogger());
  let seq = 0;
  const run = async (image: string) => {
    const exec: TaskExecution = {
      taskId: `gc${process.pid}-${++seq}`,
      attempt: 1,
      spec: { image, command: ['true'], env: new Map(), limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 }, network: 0, maxOutputBytes: 0, data: [] },
      gpuIndexes: [],
      signal: AbortSignal.timeout(120_000),
      onPhase: () => {},
      onPullProgress: () => {},
      onLog: () => {},
    };
    const res = await runner.execute(exec);
    await res.cleanup; // the image is in use until its container is removed
    assert.equal(res.outcome.kind, OutcomeKind.OUTCOME_KIND_EXITED, res.outcome.message);
    if (res.result) await rm(res.result.path, { force: true });
  };
  try {
    await run(pulledRef);
    assert.deepEqual(engine.pulls, [pulledRef]);
    assert.deepEqual(store.pulledImages(), [{ image: pulledRef, pulledAt: clock.now(), lastUsedAt: clock.now() }]);
    clock.advance(HOUR);
    await run(pulledRef);
    assert.deepEqual(engine.pulls, [pulledRef], 'present now: not pulled again');
    assert.equal(store.pulledImages()[0]!.lastUsedAt, clock.now(), 'the second task is recorded as a use');
    await run(busybox);
    assert.deepEqual(store.pulledImages().map((x) => x.image), [pulledRef], 'an image this worker did not pull is not recorded');
    // A failed pull records nothing.
    const failing = new DockerTaskRunner(DockerEngine.create(), { nodeId: `image-gc-${process.pid}`, spoolDir: spool, images: imageUseLog(store, clock, silentLogger()), outputVolumes: new LoopOutputVolumes(join(spool, 'output-fs')) }, silentLogger());
    const failed = await failing.execute({
      taskId: `gc${process.pid}-fail`, attempt: 1,
      spec: { image: '127.0.0.1:1/hivemind/missing:1', command: ['true'], env: new Map(), limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 60_000 }, network: 0, maxOutputBytes: 0, data: [] },
      gpuIndexes: [], signal: AbortSignal.timeout(60_000), onPhase: () => {}, onPullProgress: () => {}, onLog: () => {},
    });
    await failed.cleanup;
    assert.equal(failed.outcome.kind, OutcomeKind.OUTCOME_KIND_START_FAILED);
    assert.deepEqual(store.pulledImages().map((x) => x.image), [pulledRef]);

    clock.advance(HOUR);
    const r = await new ImagePruner(engine, store, clock, { budgetBytes: 0, unusedForMs: HOUR }, silentLogger()).prune(AbortSignal.timeout(60_000));
    assert.deepEqual(r.removed.map((x) => x.references), [[pulledRef]]);
    assert.equal(await engine.inspectImage(pulledRef), undefined);
    assert.ok(await engine.inspectImage(busybox), 'the busybox image is untouched');
  } finally {
    await forceRemove(engine, [pulledRef]);
  }
});
