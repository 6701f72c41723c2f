// The node's data cache against a fake data source and real temp files: one download however
// many tasks ask at once, resume after a cut, verification (a flipped bit is refetched), the disk
// budget with least-recently-used eviction that spares pinned and held entries, and the index
// shared with another process.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { planEviction, type EvictionCandidate } from '../../src/worker/data-cache/cache-eviction.js';
import { CacheIndex } from '../../src/worker/data-cache/cache-index.js';
import { CacheEntryInUseError, CacheFullError, DataCache, DataCorruptError, type DataRef, type DataSource } from '../../src/worker/data-cache/data-cache.js';
import type { OffsetChunk } from '../../src/transfer/resumable-download.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const CHUNK = 64 * 1024;

/** A fake master: serves blobs by digest in 64 KiB chunks, counts bytes, can cut a call or flip a bit. */
class FakeSource implements DataSource {
  readonly blobs = new Map<string, Buffer>();
  served = 0;
  calls = 0;
  /** Cut the next call after this many bytes. */
  cutAfter: number | undefined;
  /** Serve this many wrong bytes (a flipped bit) in the next call. */
  corruptNext = false;
  /** Calls wait for this before their first chunk. */
  gate: Promise<void> = Promise.resolve();

  add(data: Buffer, kind: 'file' | 'dir' = 'file'): DataRef {
    const digest = sha(data);
    this.blobs.set(digest, data);
    return { digest, kind, sizeBytes: data.length };
  }

  async *fetch(ref: DataRef, offset: number, signal: AbortSignal): AsyncIterable<OffsetChunk> {
    this.calls++;
    await this.gate;
    const data = this.blobs.get(ref.digest)!;
    const corrupt = this.corruptNext;
    this.corruptNext = false;
    let sent = 0;
    for (let at = offset; at < data.length; at += CHUNK) {
      signal.throwIfAborted();
      if (this.cutAfter !== undefined && sent >= this.cutAfter) {
        this.cutAfter = undefined;
        throw new Error('connection lost');
      }
      let piece = data.subarray(at, Math.min(at + CHUNK, data.length));
      if (corrupt && at === offset) {
        piece = Buffer.from(piece);
        piece[0] = piece[0]! ^ 1;
      }
      sent += piece.length;
      this.served += piece.length;
      yield { offset: at, data: piece };
      await new Promise((r) => setImmediate(r));
    }
  }
}

async function setup(t: TestContext, budgetBytes = 64 * 1024 * 1024) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-cache-'));
  const source = new FakeSource();
  const clock = new ManualClock(1_000_000);
  const open = () =>
    DataCache.open({
      dir,
      budgetBytes,
      source,
      clock,
      logger: silentLogger(),
      // a directory data set here is a file "archive" unpacked to a directory holding it
      unpack: async (archive, dest) => {
        const { mkdir, copyFile } = await import('node:fs/promises');
        await mkdir(dest);
        await copyFile(archive, join(dest, 'archive'));
      },
      hashEntry: async (path, kind) => sha(await readFile(kind === 'file' ? path : join(path, 'archive'))),
    });
  const caches: DataCache[] = [];
  const cache = await open();
  caches.push(cache);
  t.after(async () => {
    for (const c of caches) c.close();
    await rm(dir, { recursive: true, force: true });
  });
  return {
    dir,
    source,
    clock,
    cache,
    reopen: async () => {
      caches.at(-1)!.close();
      const c = await open();
      caches.push(c);
      return c;
    },
  };
}

const never = () => new AbortController().signal;

test('eviction plan: least recently used first, never pinned or held entries, and a clear reason when nothing fits', () => {
  const e = (digest: string, sizeBytes: number, lastUsedAt: number, extra: Partial<EvictionCandidate> = {}): EvictionCandidate => ({ digest, sizeBytes, lastUsedAt, pinned: false, inUse: false, ...extra });
  assert.deepEqual(planEviction([e('a', 10, 1)], 100, 50), { fits: true, evict: [], freedBytes: 0 });
  assert.deepEqual(planEviction([e('new', 30, 3), e('old', 30, 1), e('mid', 30, 2)], 100, 50), { fits: true, evict: ['old', 'mid'], freedBytes: 60 });
  assert.deepEqual(planEviction([e('old', 30, 1, { pinned: true }), e('held', 30, 2, { inUse: true }), e('free', 30, 3)], 100, 40), { fits: true, evict: ['free'], freedBytes: 30 });
  const no = planEviction([e('p', 50, 1, { pinned: true }), e('h', 40, 2, { inUse: true })], 100, 20);
  assert.equal(no.fits, false);
  assert.match(!no.fits ? no.reason : '', /needs 20 B and the cache budget is 100 B, of which 40 B is in use by tasks and 50 B pinned/);
  const huge = planEviction([], 100, 101);
  assert.match(!huge.fits ? huge.reason : '', /over the whole cache budget of 100 B \(--cache-max\)/);
});

test('a data set is downloaded once, verified, handed out read-only, and a second task is a hit', async (t) => {
  const { source, cache } = await setup(t);
  const data = randomBytes(300 * 1024);
  const ref = source.add(data);
  const progress: number[] = [];
  const a = await cache.acquire(ref, 'task-a', never(), (p) => progress.push(p.receivedBytes));
  assert.deepEqual(await readFile(a.path), data);
  assert.equal((await stat(a.path)).mode & 0o777, 0o444);
  assert.equal(progress.at(-1), data.length);
  const b = await cache.acquire(ref, 'task-b', never());
  assert.equal(b.path, a.path);
  assert.equal(source.served, data.length, 'fetched once');
  assert.deepEqual(cache.stats().hits, 1);
  assert.deepEqual(cache.stats().misses, 1);
  assert.equal(cache.list()[0]!.leases, 2);
  a.release();
  a.release();
  b.release();
  assert.equal(cache.list()[0]!.leases, 0);
  assert.equal(cache.list()[0]!.uses, 2);
});

test('four tasks asking at once share one download', async (t) => {
  const { source, cache } = await setup(t);
  const data = randomBytes(512 * 1024);
  const ref = source.add(data);
  let open!: () => void;
  source.gate = new Promise((r) => (open = r));
  const all = Promise.all(['t1', 't2', 't3', 't4'].map((id) => cache.acquire(ref, id, never())));
  await new Promise((r) => setTimeout(r, 20));
  open();
  const leases = await all;
  assert.equal(source.calls, 1);
  assert.equal(source.served, data.length, 'the bytes fetched are the data set once, not four times');
  assert.equal(new Set(leases.map((l) => l.path)).size, 1);
});

test('a cut download resumes from its partial file, also after the worker restarts', async (t) => {
  const { source, cache, reopen } = await setup(t);
  const data = randomBytes(1024 * 1024);
  const ref = source.add(data);
  source.cutAfter = 400 * 1024;
  await assert.rejects(cache.acquire(ref, 'task-a', never()), /connection lost/);
  assert.equal(cache.list()[0]!.state, 'downloading');
  assert.equal(cache.list()[0]!.leases, 0, 'the failed task let go of it');
  const again = await reopen();
  const lease = await again.acquire(ref, 'task-a', never());
  assert.deepEqual(await readFile(lease.path), data);
  assert.equal(source.served, data.length, 'only the missing bytes were fetched the second time');
});

test('a flipped bit is detected: the partial is discarded and fetched again from the start; a bad source fails clearly', async (t) => {
  const { dir, source, cache, reopen } = await setup(t);
  void cache; // the first run's cache: reopened below as after a restart
  const data = randomBytes(256 * 1024);
  const ref = source.add(data);
  // a partial left by an earlier run with a flipped bit in it
  source.cutAfter = 128 * 1024;
  await assert.rejects(cache.acquire(ref, 'x', never()), /connection lost/);
  const partial = join(dir, 'partial', ref.digest);
  const bytes = await readFile(partial);
  bytes[5] = bytes[5]! ^ 0x10;
  await writeFile(partial, bytes);
  const lease = await (await reopen()).acquire(ref, 'x', never());
  assert.deepEqual(await readFile(lease.path), data, 'refetched whole');
  lease.release();

  // a fresh download that hashes wrong is refused, and nothing is cached
  const other = source.add(randomBytes(100 * 1024));
  const c2 = await reopen();
  source.corruptNext = true;
  await assert.rejects(c2.acquire(other, 'y', never()), (err: unknown) => err instanceof DataCorruptError && /the bytes hash to [0-9a-f]{64}; the download was discarded/.test((err as Error).message));
  assert.equal(c2.list().find((e) => e.digest === other.digest), undefined);
});

test('an entry changed on disk is found at its first use after a restart and fetched again', async (t) => {
  const { source, cache, reopen } = await setup(t);
  const data = randomBytes(64 * 1024);
  const ref = source.add(data);
  const first = await cache.acquire(ref, 'a', never());
  first.release();
  const { chmod } = await import('node:fs/promises');
  await chmod(first.path, 0o644);
  const tampered = Buffer.from(data);
  tampered[100] = tampered[100]! ^ 1;
  await writeFile(first.path, tampered);
  const again = await reopen();
  const lease = await again.acquire(ref, 'b', never());
  assert.deepEqual(await readFile(lease.path), data);
  assert.equal(source.served, 2 * data.length);
});

test('the budget: least recently used free entries are evicted; pinned and held ones stay; what cannot fit says why', async (t) => {
  const { source, clock, cache } = await setup(t, 1024 * 1024);
  const mk = () => source.add(randomBytes(300 * 1024));
  const [a, b, c, d] = [mk(), mk(), mk(), mk()];
  for (const r of [a!, b!, c!]) {
    clock.advance(1000);
    (await cache.acquire(r, 'seed', never())).release();
  }
  cache.pin(a!.digest, true); // oldest, but pinned
  const held = await cache.acquire(b!, 'running', never());
  clock.advance(1000);
  const dl = await cache.acquire(d!, 'new', never());
  const digests = cache.list().map((e) => e.digest);
  assert.ok(digests.includes(a!.digest) && digests.includes(b!.digest) && digests.includes(d!.digest), 'pinned and held kept');
  assert.ok(!digests.includes(c!.digest), 'the free one was evicted');
  assert.equal(cache.stats().evictions, 1);
  const e = mk();
  await assert.rejects(cache.acquire(e, 'more', never()), (err: unknown) => err instanceof CacheFullError && /in use by tasks/.test((err as Error).message));
  assert.equal(cache.list().find((x) => x.digest === e.digest), undefined);
  held.release();
  dl.release();
});

test('remove refuses an entry a task holds, also when asked from another process through the index', async (t) => {
  const { dir, source, cache } = await setup(t);
  const ref = source.add(randomBytes(10 * 1024));
  const lease = await cache.acquire(ref, 'task', never());
  await assert.rejects(cache.remove(ref.digest), CacheEntryInUseError);
  const cli = CacheIndex.open(join(dir, 'index.db'));
  t.after(() => cli.close());
  assert.equal(cli.removeIfFree(ref.digest), 'leased');
  lease.release();
  assert.equal(cli.get(ref.digest)!.leases, 0);
  await cache.remove(ref.digest);
  await assert.rejects(stat(lease.path), /ENOENT/);
  await assert.rejects(cache.remove(ref.digest), /is not in the data cache/);
});

test('a directory data set is unpacked into its entry; the last task giving up stops the download', async (t) => {
  const { source, cache } = await setup(t);
  const ref = source.add(randomBytes(200 * 1024), 'dir');
  const lease = await cache.acquire(ref, 'a', never());
  assert.equal((await stat(lease.path)).isDirectory(), true);
  assert.equal((await readFile(join(lease.path, 'archive'))).length, 200 * 1024);

  const big = source.add(randomBytes(2 * 1024 * 1024));
  let open!: () => void;
  source.gate = new Promise((r) => (open = r));
  const ac = new AbortController();
  const p = cache.acquire(big, 'b', ac.signal);
  ac.abort(new Error('task cancelled'));
  await assert.rejects(p, /task cancelled/);
  open();
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(source.served < 2 * 1024 * 1024, `stopped early (${source.served} bytes)`);
  assert.equal(cache.list().find((e) => e.digest === big.digest)!.leases, 0);
});

test('hostile refs from the master are refused before touching the disk', async (t) => {
  const { cache } = await setup(t);
  await assert.rejects(cache.acquire({ digest: '../../etc/passwd', kind: 'file', sizeBytes: 1 }, 'x', never()), /is not 64 lowercase hex digits/);
  await assert.rejects(cache.acquire({ digest: 'a'.repeat(64), kind: 'file', sizeBytes: -1 }, 'x', never()), /is not a byte count/);
  assert.deepEqual(cache.list(), []);
});

test('dropWhenFree: a free entry goes at once; a held one once its last lease is released', async (t) => {
  const { source, cache } = await setup(t);
  const free = source.add(randomBytes(4096));
  const held = source.add(randomBytes(4096));
  (await cache.acquire(free, 'a', never())).release();
  const l1 = await cache.acquire(held, 'b', never());
  const l2 = await cache.acquire(held, 'c', never());
  await cache.dropWhenFree(free.digest);
  await cache.dropWhenFree(held.digest);
  assert.deepEqual(cache.list().map((e) => e.digest), [held.digest], 'the free one is gone, the held one stays');
  l1.release();
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(cache.list().length, 1, 'still held by c');
  l2.release();
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(cache.list(), []);
  await assert.rejects(stat(l2.path), /ENOENT/);
});

test('a source that sends more than the data set\'s size is cut off before the extra bytes reach the disk', async (t) => {
  const { source, cache, dir } = await setup(t);
  const ref = source.add(randomBytes(100 * 1024));
  recordHostile('data source: more bytes than the announced size', false);
  await assert.rejects(cache.acquire({ ...ref, sizeBytes: 50 * 1024 }, 'a', never()), (err: unknown) => err instanceof DataCorruptError && /sent more than its 51200 bytes/.test(err.message));
  const partial = await stat(join(dir, 'partial', ref.digest)).catch(() => undefined);
  assert.ok(!partial || partial.size <= 50 * 1024);
});

test('an archive that does not unpack is forgotten with its partial: the next try downloads it again', async (t) => {
  const { source, cache, dir } = await setup(t);
  const ref = source.add(randomBytes(8192), 'dir');
  const failing = Object.assign(cache, {});
  (failing as unknown as { deps: { unpack: () => Promise<void> } }).deps.unpack = async () => {
    throw new DataCorruptError('not a canonical archive');
  };
  await assert.rejects(cache.acquire(ref, 'a', never()), /not a canonical archive/);
  assert.deepEqual(cache.list(), []);
  await assert.rejects(stat(join(dir, 'partial', ref.digest)), /ENOENT/);
});

test('wouldNotFit: what is cached needs no room; what is missing must fit by evicting only free entries', async (t) => {
  const { source, cache } = await setup(t, 100 * 1024);
  const held = source.add(randomBytes(60 * 1024));
  const lease = await cache.acquire(held, 'a', never());
  const other = source.add(randomBytes(50 * 1024));
  assert.equal(cache.wouldNotFit([held]), undefined, 'already cached');
  assert.match(cache.wouldNotFit([held, other]) ?? '', new RegExp(`^data set sha256:${other.digest} cannot fit the data cache: it needs 50.0 KiB and the cache budget is 100.0 KiB, of which 60.0 KiB is in use by tasks`));
  lease.release();
  assert.equal(cache.wouldNotFit([other]), undefined, 'the free entry would be evicted for it');
});
