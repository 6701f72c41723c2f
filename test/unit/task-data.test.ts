// A task's data sets on the node: the spec's mounts read again (a hostile master's digest or path
// is refused before anything touches the disk), the leases of an attempt acquired together with
// their progress summed, released together, and all given back when one of them fails.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidTaskError } from '../../src/common/errors.js';
import { DataKind, type DataMount } from '../../src/protocol/gen/hivemind/v1/common.js';
import { DataCorruptError, type DataLease, type DataProgress, type DataRef } from '../../src/worker/data-cache/data-cache.js';
import { cacheStatus, MAX_REPORTED_HELD } from '../../src/worker/data-cache/cache-status.js';
import type { CacheEntry } from '../../src/worker/data-cache/cache-index.js';
import { TaskData, dataHolder, dataNeeds, dataRefusal, isDataRejection, type TaskDataDeps } from '../../src/worker/task-data.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);
const mount = (m: Partial<DataMount> = {}): DataMount => ({ sha256: `sha256:${A}`, path: '/models', size: 100, kind: DataKind.DATA_KIND_DIR, url: '', ...m });

test('dataNeeds: the cache refs of a spec\'s mounts, with the attempt (and url) as their via', () => {
  const needs = dataNeeds('t1', 3, [mount(), mount({ sha256: `sha256:${B}`, path: '/data/x.bin', kind: DataKind.DATA_KIND_UNSPECIFIED, size: 0, url: 'https://example.org/x.bin' })]);
  assert.deepEqual(needs, [
    { ref: { digest: A, kind: 'dir', sizeBytes: 100, via: { taskId: 't1', attempt: 3 } }, containerPath: '/models', sizeUnknown: false },
    { ref: { digest: B, kind: 'file', sizeBytes: 0, via: { taskId: 't1', attempt: 3, url: 'https://example.org/x.bin' } }, containerPath: '/data/x.bin', sizeUnknown: true },
  ]);
  assert.equal(dataHolder('t1', 3), 't1:3');
});

test('hostile master: a digest that is not 64 hex, or a path that is not a clean absolute one, is refused naming the field', () => {
  const cases: [string, Partial<DataMount>, RegExp][] = [
    ['digest with a path in it', { sha256: 'sha256:../../etc/passwd' }, /spec\.data\[0\]\.sha256 "sha256:\.\.\/\.\.\/etc\/passwd" is not "sha256:" and 64 lowercase hex digits/],
    ['digest in upper case', { sha256: `sha256:${A.toUpperCase()}` }, /spec\.data\[0\]\.sha256/],
    ['digest without prefix', { sha256: A }, /spec\.data\[0\]\.sha256/],
    ['relative mount path', { path: 'models' }, /spec\.data\[0\]\.path "models" is not a normalised absolute path/],
    ['mount path with ..', { path: '/data/../etc' }, /spec\.data\[0\]\.path "\/data\/\.\.\/etc"/],
    ['mount path /', { path: '/' }, /spec\.data\[0\]\.path "\/"/],
    ['mount path with a comma', { path: '/data,ro=false' }, /spec\.data\[0\]\.path/],
    ['unknown kind from the master', { kind: DataKind.DATA_KIND_UNSPECIFIED }, /spec\.data\[0\]\.kind is not a file or a directory/],
    ['negative size', { size: -1 }, /spec\.data\[0\]\.size -1 is not a byte count/],
  ];
  for (const [name, m, msg] of cases) {
    recordHostile(`node re-check of a data mount: ${name}`, false);
    assert.throws(() => dataNeeds('t1', 1, [mount(m)]), (err: unknown) => err instanceof InvalidTaskError && msg.test(err.message), name);
  }
});

class FakeCache implements TaskDataDeps {
  held = new Map<string, string[]>();
  fail = new Map<string, Error>();
  async acquire(ref: DataRef, holder: string, _signal: AbortSignal, onProgress?: (p: DataProgress) => void): Promise<DataLease> {
    onProgress?.({ receivedBytes: Math.floor(ref.sizeBytes / 2), totalBytes: ref.sizeBytes });
    await new Promise((r) => setImmediate(r));
    const err = this.fail.get(ref.digest);
    if (err) throw err;
    this.held.set(ref.digest, [...(this.held.get(ref.digest) ?? []), holder]);
    return { path: `/cache/entries/${ref.digest}`, release: () => this.held.set(ref.digest, this.held.get(ref.digest)!.filter((h) => h !== holder)) };
  }
  async urlSize(): Promise<number> {
    return 40;
  }
}

test('TaskData: leases every data set, sums the progress, binds each at its path, releases all', async () => {
  const cache = new FakeCache();
  const progress: DataProgress[] = [];
  const needs = dataNeeds('t1', 1, [mount(), mount({ sha256: `sha256:${B}`, path: '/w.bin', size: 0, kind: DataKind.DATA_KIND_FILE, url: 'http://127.0.0.1/w.bin' })]);
  const data = await TaskData.acquire('t1:1', needs, cache, new AbortController().signal, (p) => progress.push(p));
  assert.deepEqual(data.binds, [
    { hostPath: `/cache/entries/${A}`, containerPath: '/models' },
    { hostPath: `/cache/entries/${B}`, containerPath: '/w.bin' },
  ]);
  assert.ok(progress.every((p) => p.totalBytes === 140), 'the total is both data sets, the url one sized by its server');
  assert.deepEqual(progress.at(-1), { receivedBytes: 140, totalBytes: 140 });
  assert.deepEqual(cache.held.get(A), ['t1:1']);
  data.release();
  data.release();
  assert.deepEqual(cache.held.get(A), []);
  assert.deepEqual(cache.held.get(B), []);
});

test('TaskData: one data set failing releases the others and the error names it', async () => {
  const cache = new FakeCache();
  cache.fail.set(B, new DataCorruptError('the bytes hash to something else'));
  const needs = dataNeeds('t1', 1, [mount(), mount({ sha256: `sha256:${B}`, path: '/b', kind: DataKind.DATA_KIND_FILE })]);
  await assert.rejects(TaskData.acquire('t1:1', needs, cache, new AbortController().signal, () => undefined), (err: unknown) => {
    assert.ok(isDataRejection(err));
    assert.match((err as Error).message, new RegExp(`^data set sha256:${B}: the bytes hash to something else`));
    return true;
  });
  assert.deepEqual(cache.held.get(A), [], 'the lease already taken was given back');
});

test('cacheStatus: ready entries most recently used first (bounded), free = budget - all, evictable = ready, unpinned, unheld', () => {
  const e = (digest: string, over: Partial<CacheEntry>): CacheEntry => ({ digest, kind: 'file', sizeBytes: 10, state: 'ready', pinned: false, createdAt: 0, lastUsedAt: 0, uses: 0, leases: 0, ...over });
  const s = cacheStatus([e(A, { leases: 1 }), e(B, {}), e('c'.repeat(64), { pinned: true }), e('d'.repeat(64), { state: 'downloading', sizeBytes: 50 })], 100);
  assert.deepEqual(s.held.map((h) => h.sha256), [`sha256:${A}`, `sha256:${B}`, `sha256:${'c'.repeat(64)}`]);
  assert.equal(s.freeBytes, 100 - 80);
  assert.equal(s.evictableBytes, 10);
  assert.equal(s.budgetBytes, 100);
  const many = Array.from({ length: MAX_REPORTED_HELD + 5 }, (_, i) => e(i.toString(16).padStart(64, '0'), { sizeBytes: 1 }));
  assert.equal(cacheStatus(many, 10).held.length, MAX_REPORTED_HELD);
  assert.equal(cacheStatus(many, 10).freeBytes, 0, 'never negative');
});

test('dataRefusal: a task whose data cannot fit the cache (or a node without one) is refused with the reason', () => {
  const a = (data: DataMount[]) => ({ taskId: 't9', attempt: 1, spec: { data } }) as unknown as Parameters<typeof dataRefusal>[0];
  const asked: DataRef[][] = [];
  const full = { wouldNotFit: (refs: readonly DataRef[]) => (asked.push([...refs]), 'it needs 100 B and the cache budget is 10 B, of which 10 B is in use by tasks and 0 B pinned') };
  assert.equal(dataRefusal(a([]), undefined), undefined, 'no data, nothing to refuse');
  assert.match(dataRefusal(a([mount()]), full)!, /^data cache full: it needs 100 B and the cache budget is 10 B/);
  assert.deepEqual(asked[0]!.map((r) => r.digest), [A]);
  assert.equal(dataRefusal(a([mount()]), { wouldNotFit: () => undefined }), undefined);
  assert.equal(dataRefusal(a([mount()]), undefined), 'this node runs without a data cache: it cannot run tasks that mount data sets');
  assert.match(dataRefusal(a([mount({ path: 'rel' })]), full)!, /^invalid task spec: spec\.data\[0\]\.path "rel"/);
});
