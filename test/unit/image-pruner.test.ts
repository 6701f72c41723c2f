// The image GC's decisions against a hand-written engine and store: budget math, the unused-for
// threshold, and everything it must never remove.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../../src/common/clock.js';
import { AbortedError, EngineError, ImageInUseError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import type { ImageInfo } from '../../src/runtime/container-engine.js';
import { familiarTag } from '../../src/runtime/image-reference.js';
import { ImagePruner, type ImagePruneEngine, type PulledImagesView } from '../../src/runtime/image-pruner.js';
import type { PulledImageRecord } from '../../src/worker/store/worker-store.js';

const MB = 1024 * 1024;
const HOUR = 3_600_000;

/** An engine holding images by id, each named by references; removal follows Docker's rules. */
class FakeImageEngine implements ImagePruneEngine {
  private readonly images = new Map<string, { sizeBytes: number; refs: Set<string>; digests: string[] }>();
  /** Image ids a (possibly stopped) container uses: their last reference cannot be removed. */
  readonly usedByContainers = new Set<string>();
  /** References whose removal fails with an engine error. */
  readonly failing = new Set<string>();
  readonly removeCalls: string[] = [];

  add(id: string, sizeBytes: number, ...refs: string[]): this {
    this.images.set(id, { sizeBytes, refs: new Set(refs.filter((r) => !r.includes('@'))), digests: refs.filter((r) => r.includes('@')) });
    return this;
  }

  has(id: string): boolean {
    return this.images.has(id);
  }

  private resolve(ref: string): [string, { sizeBytes: number; refs: Set<string>; digests: string[] }] | undefined {
    const tag = familiarTag(ref);
    for (const entry of this.images) {
      if ((tag && entry[1].refs.has(tag)) || entry[1].digests.includes(ref)) return entry;
    }
    return undefined;
  }

  async inspectImage(ref: string, signal?: AbortSignal): Promise<ImageInfo | undefined> {
    if (signal?.aborted) throw new AbortedError('inspect: aborted');
    const e = this.resolve(ref);
    return e && { id: e[0], repoTags: [...e[1].refs], repoDigests: e[1].digests, sizeBytes: e[1].sizeBytes };
  }

  async removeImage(ref: string, signal?: AbortSignal): Promise<void> {
    if (signal?.aborted) throw new AbortedError('remove: aborted');
    this.removeCalls.push(ref);
    if (this.failing.has(ref)) throw new EngineError(`remove image ${ref}: the daemon had a bad day`);
    const e = this.resolve(ref);
    if (!e) return;
    const [id, img] = e;
    const last = img.refs.size + img.digests.length <= 1 || ref.includes('@');
    if (last && this.usedByContainers.has(id)) throw new ImageInUseError(`remove image ${ref}: conflict: container 0123 is using its referenced image`);
    const tag = familiarTag(ref);
    if (tag) img.refs.delete(tag);
    if (last || img.refs.size === 0) this.images.delete(id);
  }
}

class FakeStore implements PulledImagesView {
  records = new Map<string, PulledImageRecord>();
  unfinished: string[] = [];
  /** Runs at each unfinishedTaskImages() call (numbered from 1), before it answers. */
  onUnfinished: (call: number) => void = () => {};
  private unfinishedCalls = 0;

  pulled(image: string, pulledAt: number, lastUsedAt = pulledAt): this {
    this.records.set(image, { image, pulledAt, lastUsedAt });
    return this;
  }

  pulledImages(): PulledImageRecord[] {
    return [...this.records.values()].sort((a, b) => a.lastUsedAt - b.lastUsedAt);
  }

  unfinishedTaskImages(): string[] {
    this.onUnfinished(++this.unfinishedCalls);
    return [...this.unfinished];
  }

  forgetImage(image: string): void {
    this.records.delete(image);
  }
}

function setup(budgetBytes: number, unusedForMs = HOUR) {
  const clock = new ManualClock(100 * HOUR);
  const engine = new FakeImageEngine();
  const store = new FakeStore();
  const pruner = new ImagePruner(engine, store, clock, { budgetBytes, unusedForMs }, silentLogger());
  return { clock, engine, store, pruner };
}

test('within the budget nothing is removed, however old', async () => {
  const { engine, store, pruner } = setup(30 * MB);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 20 * MB, 'b:1');
  store.pulled('a:1', 0).pulled('b:1', 0);
  const r = await pruner.prune();
  assert.deepEqual(r, { removed: [], freedBytes: 0, keptBytes: 30 * MB });
  assert.deepEqual(engine.removeCalls, []);
});

test('over the budget, the least recently used go first, and only until the budget is met', async () => {
  const { clock, engine, store, pruner } = setup(25 * MB);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1').add('sha256:c', 10 * MB, 'c:1').add('sha256:d', 10 * MB, 'd:1');
  const now = clock.now();
  // Pulled in one order, used in another: the last use decides.
  store.pulled('a:1', now - 50 * HOUR, now - 2 * HOUR).pulled('b:1', now - 40 * HOUR, now - 9 * HOUR).pulled('c:1', now - 30 * HOUR, now - 5 * HOUR).pulled('d:1', now - 20 * HOUR, now - 3 * HOUR);
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.references), [['b:1'], ['c:1']]);
  assert.equal(r.freedBytes, 20 * MB);
  assert.equal(r.keptBytes, 20 * MB);
  assert.deepEqual(r.removed[0], { id: 'sha256:b', references: ['b:1'], sizeBytes: 10 * MB, lastUsedAt: now - 9 * HOUR });
  assert.ok(!engine.has('sha256:b') && !engine.has('sha256:c') && engine.has('sha256:a') && engine.has('sha256:d'));
  assert.deepEqual(store.pulledImages().map((x) => x.image).sort(), ['a:1', 'd:1'], 'removed images are forgotten');
});

test('an image used more recently than unusedFor stays even over the budget', async () => {
  const { clock, engine, store, pruner } = setup(0, 24 * HOUR);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1');
  store.pulled('a:1', 0, clock.now() - 24 * HOUR).pulled('b:1', 0, clock.now() - 24 * HOUR + 1);
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:a'], 'exactly unusedFor ago is old enough; 1 ms less is not');
  assert.equal(r.keptBytes, 10 * MB);
  assert.deepEqual(engine.removeCalls, ['a:1']);
});

test('images this worker did not pull are neither counted nor touched', async () => {
  const { engine, store, pruner } = setup(5 * MB, 0);
  engine.add('sha256:operator', 900 * MB, 'operator/tool:1').add('sha256:busybox', 2 * MB, 'hivemind/busybox:1').add('sha256:a', 10 * MB, 'a:1');
  store.pulled('a:1', 0);
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:a']);
  assert.equal(r.keptBytes, 0, 'the operator images do not count against this worker budget');
  assert.deepEqual(engine.removeCalls, ['a:1']);
  assert.ok(engine.has('sha256:operator') && engine.has('sha256:busybox'));
});

test('an image that another tag also names is someone else\'s too: kept and not counted', async () => {
  const { engine, store, pruner } = setup(0, 0);
  // Pulled here as alpine:3, then tagged by another agent sharing the daemon.
  engine.add('sha256:alpine', 8 * MB, 'alpine:3', 'other-agent/base:v2');
  store.pulled('alpine:3', 0);
  const r = await pruner.prune();
  assert.deepEqual(r, { removed: [], freedBytes: 0, keptBytes: 0 });
  assert.deepEqual(engine.removeCalls, []);
});

test('references in any spelling are matched to the tags Docker lists', async () => {
  const { engine, store, pruner } = setup(0, 0);
  engine.add('sha256:bb', 4 * MB, 'busybox:latest', 'ghcr.io/org/app:1', 'busybox@sha256:1111');
  store.pulled('docker.io/library/busybox', 0).pulled('ghcr.io/org/app:1', 0).pulled('busybox@sha256:1111', 0);
  const r = await pruner.prune();
  assert.equal(r.removed.length, 1, 'three references of one image are one image');
  assert.deepEqual(r.removed[0]!.references.sort(), ['busybox@sha256:1111', 'docker.io/library/busybox', 'ghcr.io/org/app:1']);
  assert.equal(r.freedBytes, 4 * MB, 'its size counts once');
  assert.equal(engine.has('sha256:bb'), false);
});

test('an image of an unfinished task is never removed, whatever reference the task used', async () => {
  const { engine, store, pruner } = setup(0, 0);
  engine.add('sha256:bb', 4 * MB, 'busybox:latest').add('sha256:a', 10 * MB, 'a:1');
  store.pulled('busybox:latest', 0).pulled('a:1', 1);
  store.unfinished = ['busybox'];
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:a']);
  assert.equal(r.keptBytes, 4 * MB, 'over budget, and still kept');
  assert.ok(engine.has('sha256:bb'));
  assert.ok(!engine.removeCalls.includes('busybox:latest'));
});

test('an image a task takes while the collection runs is kept', async () => {
  const { engine, store, pruner } = setup(0, 0);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1');
  store.pulled('a:1', 0).pulled('b:1', 1);
  // The list of candidates is made with no task running; then a task for a:1 arrives.
  store.onUnfinished = (call) => {
    if (call === 2) store.unfinished = ['a:1'];
  };
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:b']);
  assert.ok(engine.has('sha256:a'));
});

test('an image used again while the collection runs is kept', async () => {
  const { clock, engine, store, pruner } = setup(0, 0);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1');
  store.pulled('a:1', 0).pulled('b:1', 1);
  store.onUnfinished = (call) => {
    if (call === 2) store.pulled('a:1', 0, clock.now());
  };
  const r = await pruner.prune();
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:b']);
  assert.ok(engine.has('sha256:a'));
});

test('an image a container still uses is skipped softly; the next candidate goes instead', async () => {
  const { engine, store, pruner } = setup(10 * MB, 0);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1').add('sha256:c', 10 * MB, 'c:1');
  engine.usedByContainers.add('sha256:a');
  engine.failing.add('b:1');
  store.pulled('a:1', 0).pulled('b:1', 1).pulled('c:1', 2);
  const r = await pruner.prune();
  assert.deepEqual(engine.removeCalls, ['a:1', 'b:1', 'c:1']);
  assert.deepEqual(r.removed.map((x) => x.id), ['sha256:c']);
  assert.equal(r.keptBytes, 20 * MB);
  assert.ok(engine.has('sha256:a') && engine.has('sha256:b'));
  assert.deepEqual(store.pulledImages().map((x) => x.image), ['a:1', 'b:1'], 'kept images stay recorded for the next collection');
});

test('a recorded image that is gone is forgotten and not counted', async () => {
  const { engine, store, pruner } = setup(10 * MB, 0);
  engine.add('sha256:a', 10 * MB, 'a:1');
  store.pulled('a:1', 0).pulled('pruned-by-operator:1', 0);
  const r = await pruner.prune();
  assert.deepEqual(r, { removed: [], freedBytes: 0, keptBytes: 10 * MB });
  assert.deepEqual(store.pulledImages().map((x) => x.image), ['a:1']);
});

test('an abort stops the collection with AbortedError', async () => {
  const { engine, store, pruner } = setup(0, 0);
  engine.add('sha256:a', 10 * MB, 'a:1').add('sha256:b', 10 * MB, 'b:1');
  store.pulled('a:1', 0).pulled('b:1', 1);
  const ctl = new AbortController();
  const remove = engine.removeImage.bind(engine);
  engine.removeImage = async (ref, signal) => {
    await remove(ref, signal);
    ctl.abort();
  };
  await assert.rejects(pruner.prune(ctl.signal), AbortedError);
  assert.deepEqual(engine.removeCalls, ['a:1']);
  assert.ok(engine.has('sha256:b'));
});

test('familiarTag spells references the way Docker lists tags', () => {
  assert.equal(familiarTag('busybox'), 'busybox:latest');
  assert.equal(familiarTag('library/busybox:1.36'), 'busybox:1.36');
  assert.equal(familiarTag('docker.io/library/busybox'), 'busybox:latest');
  assert.equal(familiarTag('index.docker.io/user/app:2'), 'user/app:2');
  assert.equal(familiarTag('user/app'), 'user/app:latest');
  assert.equal(familiarTag('ghcr.io/org/app:1'), 'ghcr.io/org/app:1');
  assert.equal(familiarTag('localhost:5000/app'), 'localhost:5000/app:latest');
  assert.equal(familiarTag('localhost/app:3'), 'localhost/app:3');
  assert.equal(familiarTag('ghcr.io/library/app'), 'ghcr.io/library/app:latest', 'library/ is only implied on Docker Hub');
  assert.equal(familiarTag('alpine@sha256:abcd'), undefined);
});
