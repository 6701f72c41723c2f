// The node's data cache: data sets (models, corpora) kept on disk by their sha256 and handed to
// tasks read-only. Each is downloaded once, however many tasks want it at the same time; a download
// cut by a restart or kill -9 goes on from its partial file; nothing is handed out before its bytes
// hash to its digest (once per worker run for entries already there); the disk budget is kept by
// evicting the least recently used entries that no task holds and nobody pinned.
import { mkdirSync, readdirSync } from 'node:fs';
import { chmod, rename, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../common/clock.js';
import { errorMessage, HivemindError } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { downloadResumable, type OffsetChunk } from '../../transfer/resumable-download.js';
import { CacheIndex, type CacheEntry, type DataKind } from './cache-index.js';
import type { CacheCounters, CacheStats } from '../contracts.js';
import { planEviction } from './cache-eviction.js';
import { CacheEntryInUseError, CacheFullError, DataCorruptError } from './cache-errors.js';
import { discardEntry, makeReadOnly, makeRemovable } from './entry-files.js';

export { CacheEntryInUseError, CacheFullError, DataCorruptError };

export const DIGEST_HEX = /^[0-9a-f]{64}$/;

/** A data set a task needs, as the master describes it. */
export interface DataRef {
  /** 64 lowercase hex digits: it becomes a file name, so nothing else is accepted. */
  digest: string;
  kind: DataKind;
  sizeBytes: number;
  /**
   * Opaque to the cache: where its source finds the bytes (the task asking, an url). A download
   * shared by several tasks fetches with the ref of the latest task still waiting for it.
   */
  via?: unknown;
}

/** Where the bytes come from: the master over the node's session, or an external URL. */
export interface DataSource {
  /** Streams the data set's bytes (a directory's canonical archive) from `offset` on. */
  fetch(ref: DataRef, offset: number, signal: AbortSignal): AsyncIterable<OffsetChunk>;
}

export interface DataCacheDeps {
  /** The cache's own directory (under the worker's data dir). */
  dir: string;
  budgetBytes: number;
  source: DataSource;
  clock: Clock;
  logger: Logger;
  /** Unpacks a directory data set's verified archive (of digest `digest`) into `dest` (a new directory). */
  unpack(archive: string, dest: string, digest: string, signal: AbortSignal): Promise<void>;
  /** The digest of an entry as it is on disk: re-checked once per worker run before first use. */
  hashEntry(path: string, kind: DataKind, signal: AbortSignal): Promise<string>;
}

/** A data set handed to a task: mount `path` read-only; release it when the task is done with it. */
export interface DataLease {
  path: string;
  release(): void;
}

export interface DataProgress {
  receivedBytes: number;
  totalBytes: number;
}

export type { CacheCounters, CacheStats };

interface Flight {
  done: Promise<void>;
  controller: AbortController;
  waiters: number;
  progress: Set<(p: DataProgress) => void>;
  /** The refs of the tasks waiting, latest last: a resumed fetch goes through one still there. */
  refs: DataRef[];
}

export class DataCache {
  private readonly flights = new Map<string, Flight>();
  /** Entries whose bytes were checked against their digest in this run. */
  private readonly verified = new Set<string>();
  /** Entries to remove once their last lease is released (dropWhenFree). */
  private readonly dropping = new Set<string>();
  private readonly counters: CacheCounters = { hits: 0, misses: 0, evictions: 0, bytesDownloaded: 0 };

  private constructor(
    private readonly deps: DataCacheDeps,
    private readonly index: CacheIndex,
  ) {}

  /**
   * Opens the cache: its index, its folders; forgets the leases of a previous run, rows whose
   * entry is gone from disk, and leftovers of unpacking or removing.
   */
  static async open(deps: DataCacheDeps): Promise<DataCache> {
    for (const sub of ['entries', 'partial', 'trash']) mkdirSync(join(deps.dir, sub), { recursive: true, mode: 0o700 });
    const index = CacheIndex.open(join(deps.dir, 'index.db'));
    const cache = new DataCache(deps, index);
    index.clearLeases();
    await rm(join(deps.dir, 'trash'), { recursive: true, force: true });
    mkdirSync(join(deps.dir, 'trash'), { mode: 0o700 });
    for (const name of readdirSync(join(deps.dir, 'partial'))) {
      if (name.includes('.unpack')) await rm(join(deps.dir, 'partial', name), { recursive: true, force: true });
    }
    for (const e of index.list()) {
      if (e.state === 'ready' && !(await exists(cache.entryPath(e.digest)))) {
        deps.logger.warn({ digest: e.digest }, 'data cache: entry missing on disk, forgotten');
        index.forget(e.digest);
      }
    }
    return cache;
  }

  entryPath(digest: string): string {
    return join(this.deps.dir, 'entries', digest);
  }

  private partialPath(digest: string): string {
    return join(this.deps.dir, 'partial', digest);
  }

  list(): CacheEntry[] {
    return this.index.list();
  }

  stats(): CacheStats {
    const all = this.index.list();
    return { ...this.counters, entries: all.length, bytes: all.reduce((s, e) => s + e.sizeBytes, 0), budgetBytes: this.deps.budgetBytes };
  }

  /**
   * Hands `holder` (a task id) the data set, downloading it first if needed. The lease is taken
   * before anything else, so the entry cannot be evicted or removed from under the task.
   */
  async acquire(ref: DataRef, holder: string, signal: AbortSignal, onProgress?: (p: DataProgress) => void): Promise<DataLease> {
    if (!DIGEST_HEX.test(ref.digest)) throw new DataCorruptError(`data set digest ${JSON.stringify(ref.digest).slice(0, 80)} is not 64 lowercase hex digits`);
    if (!Number.isSafeInteger(ref.sizeBytes) || ref.sizeBytes < 0) throw new DataCorruptError(`data set sha256:${ref.digest}: size ${ref.sizeBytes} is not a byte count`);
    this.index.addLease(ref.digest, holder, this.deps.clock.now());
    const release = () => {
      this.index.dropLease(ref.digest, holder);
      if (this.dropping.has(ref.digest)) {
        void this.dropWhenFree(ref.digest).catch((err: unknown) => this.deps.logger.warn({ digest: ref.digest, err: errorMessage(err) }, 'data cache: could not remove a dropped entry'));
      }
    };
    try {
      for (;;) {
        signal.throwIfAborted();
        const entry = this.index.get(ref.digest);
        if (entry?.state === 'ready') {
          if (await this.stillGood(entry, signal)) {
            this.counters.hits++;
            break;
          }
          continue;
        }
        await this.join(ref, signal, onProgress);
        this.counters.misses++;
        break;
      }
      this.index.touch(ref.digest, this.deps.clock.now());
      let released = false;
      return {
        path: this.entryPath(ref.digest),
        release: () => {
          if (released) return;
          released = true;
          release();
        },
      };
    } catch (err) {
      try {
        release();
      } catch (releaseErr) {
        // The index on a full disk cannot record it; the lease goes at the next start. The cause counts.
        this.deps.logger.warn({ digest: ref.digest, err: errorMessage(releaseErr) }, 'data cache: could not release a lease');
      }
      throw this.diskFull(err, ref, 'nothing was kept');
    }
  }

  /** Removes an entry no task holds (`hivemind worker cache rm`). */
  async remove(digest: string): Promise<void> {
    const r = this.index.removeIfFree(digest);
    if (r === 'leased') throw new CacheEntryInUseError(`sha256:${digest} is in use by a task; it can be removed once no task holds it`);
    if (r === 'absent') throw new HivemindError('NOT_FOUND', `sha256:${digest} is not in the data cache`);
    await this.discard(digest);
  }

  /**
   * Removes an entry once no task holds it: at once when free, else when its last lease is
   * released (the master removed the data set; tasks using it now finish with it).
   */
  async dropWhenFree(digest: string): Promise<void> {
    if (!DIGEST_HEX.test(digest)) return;
    const r = this.index.removeIfFree(digest);
    if (r === 'leased') {
      this.dropping.add(digest);
      return;
    }
    this.dropping.delete(digest);
    if (r === 'removed') {
      this.deps.logger.info({ digest }, 'data cache: removed (the master dropped the data set)');
      await this.discard(digest);
    }
  }

  /** Pins (never evicted) or unpins an entry. */
  pin(digest: string, pinned: boolean): void {
    if (!this.index.setPinned(digest, pinned)) throw new HivemindError('NOT_FOUND', `sha256:${digest} is not in the data cache`);
  }

  close(): void {
    for (const f of this.flights.values()) f.controller.abort(new Error('data cache closing'));
    this.index.close();
  }

  /** Checks an entry's bytes once per run; a corrupt one is forgotten and discarded (then fetched again). */
  private async stillGood(entry: CacheEntry, signal: AbortSignal): Promise<boolean> {
    if (this.verified.has(entry.digest)) return true;
    const got = await this.deps.hashEntry(this.entryPath(entry.digest), entry.kind, signal).catch((err: unknown) => `unreadable (${errorMessage(err)})`);
    if (got === entry.digest) {
      this.verified.add(entry.digest);
      return true;
    }
    this.deps.logger.warn({ digest: entry.digest, got }, 'data cache: entry does not match its digest; discarded, fetching it again');
    this.index.forget(entry.digest);
    await this.discard(entry.digest);
    return false;
  }

  /** Waits for the data set's one download, starting it if none is under way. */
  private async join(ref: DataRef, signal: AbortSignal, onProgress?: (p: DataProgress) => void): Promise<void> {
    let flight = this.flights.get(ref.digest);
    // A download being stopped (its last task gave up) is let finish, then started anew.
    while (flight?.controller.signal.aborted) {
      await flight.done.catch(() => undefined);
      flight = this.flights.get(ref.digest);
    }
    if (!flight) {
      const controller = new AbortController();
      const f: Flight = { controller, waiters: 0, progress: new Set(), refs: [], done: Promise.resolve() };
      const latest = () => f.refs.at(-1) ?? ref;
      f.done = this.download(ref, controller.signal, (p) => f.progress.forEach((cb) => cb(p)), latest).finally(() => this.flights.delete(ref.digest));
      // a download nobody waits for any more (all its tasks cancelled) must not be an unhandled rejection
      f.done.catch(() => undefined);
      this.flights.set(ref.digest, f);
      flight = f;
    }
    const f = flight;
    f.waiters++;
    f.refs.push(ref);
    if (onProgress) f.progress.add(onProgress);
    try {
      await new Promise<void>((resolve, reject) => {
        const onAbort = () => reject(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
        if (signal.aborted) return onAbort();
        signal.addEventListener('abort', onAbort, { once: true });
        f.done.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
      });
    } finally {
      if (onProgress) f.progress.delete(onProgress);
      f.refs.splice(f.refs.indexOf(ref), 1);
      // The last task to give up stops the download; its partial file stays for the next one.
      if (--f.waiters === 0 && this.flights.get(ref.digest) === f) f.controller.abort(new Error('no task needs the data set any more'));
    }
  }

  private async download(ref: DataRef, signal: AbortSignal, progress: (p: DataProgress) => void, latest: () => DataRef): Promise<void> {
    const log = this.deps.logger.child({ digest: ref.digest });
    this.makeRoom(ref);
    this.index.beginDownload(ref.digest, ref.kind, ref.sizeBytes, this.deps.clock.now());
    const partial = this.partialPath(ref.digest);
    for (let attempt = 1; ; attempt++) {
      let received = 0;
      const got = await downloadResumable({
        file: partial,
        size: ref.sizeBytes,
        signal,
        fetch: (offset) => this.counted(ref.digest, this.deps.source.fetch(latest(), offset, signal), offset, ref.sizeBytes, progress, (n) => (received += n)),
        outOfOrder: (expected, got) => new DataCorruptError(`data set sha256:${ref.digest}: a chunk at offset ${got} arrived where ${expected} was expected`),
        cannotWrite: (err) => new HivemindError('CACHE_UNWRITABLE', `data cache: cannot write ${partial}: ${err.message}`),
      }).catch((err: unknown) => {
        throw this.diskFull(err, ref, 'what arrived is kept, and the download goes on from there');
      });
      this.counters.bytesDownloaded += received;
      if (got.size === ref.sizeBytes && got.sha256 === ref.digest) {
        log.info({ bytes: got.size, resumedFrom: got.resumedFrom }, 'data cache: data set downloaded and verified');
        break;
      }
      await rm(partial, { force: true });
      const what = got.size !== ref.sizeBytes ? `${got.size} bytes arrived, not ${ref.sizeBytes}` : `the bytes hash to ${got.sha256}`;
      // A bad partial left by an earlier run is the likely cause when this one resumed: start over once.
      if (attempt === 1 && got.resumedFrom > 0) {
        log.warn({ resumedFrom: got.resumedFrom }, `data cache: ${what}; discarded, downloading again from the start`);
        continue;
      }
      this.index.forget(ref.digest);
      throw new DataCorruptError(`data set sha256:${ref.digest}: ${what}; the download was discarded`);
    }
    const dest = this.entryPath(ref.digest);
    if (ref.kind === 'file') {
      await chmod(partial, 0o444);
      await rename(partial, dest);
    } else {
      const staging = `${partial}.unpack`;
      await rm(staging, { recursive: true, force: true });
      try {
        await this.deps.unpack(partial, staging, ref.digest, signal);
      } catch (err) {
        err = this.diskFull(err, ref, 'its download is discarded');
        // An archive that cannot be unpacked (unsafe, not canonical) will not unpack next time either.
        await makeRemovable(staging);
        await rm(staging, { recursive: true, force: true });
        if (!signal.aborted) {
          this.index.forget(ref.digest);
          await rm(partial, { force: true });
        }
        throw err;
      }
      await rename(staging, dest);
      // After the move: a read-only directory cannot be moved to another parent by a non-root owner.
      await makeReadOnly(dest);
      await rm(partial, { force: true });
    }
    this.index.markReady(ref.digest, this.deps.clock.now());
    this.verified.add(ref.digest);
  }

  /**
   * Why `refs` could not all be made room for now (evicting only what no task holds), or undefined
   * when they could: the check before a task is accepted. Data sets already cached need no room.
   */
  wouldNotFit(refs: readonly DataRef[]): string | undefined {
    const entries = this.index.list();
    const have = new Set(entries.map((e) => e.digest));
    const missing = [...new Map(refs.filter((r) => !have.has(r.digest)).map((r) => [r.digest, r])).values()];
    if (missing.length === 0) return undefined;
    const plan = planEviction(this.candidates(entries), this.deps.budgetBytes, missing.reduce((s, r) => s + r.sizeBytes, 0));
    return plan.fits ? undefined : `${missing.length === 1 ? `data set sha256:${missing[0]!.digest}` : `its ${missing.length} data sets not cached here`} cannot fit the data cache: ${plan.reason}`;
  }

  private candidates(entries: readonly CacheEntry[]) {
    return entries.map((e) => ({ digest: e.digest, sizeBytes: e.sizeBytes, lastUsedAt: e.lastUsedAt, pinned: e.pinned, inUse: e.leases > 0 || this.flights.has(e.digest) }));
  }

  /** A full disk under the cache (the budget is more than the disk has left) as a CacheFullError naming the data set. */
  private diskFull(err: unknown, ref: DataRef, then: string): unknown {
    const code = (err as NodeJS.ErrnoException | undefined)?.code;
    // SQLITE_FULL: the index shares the disk.
    if (code !== 'ENOSPC' && code !== 'EDQUOT' && code !== 'SQLITE_FULL') return err;
    return new CacheFullError(`data set sha256:${ref.digest}: the disk under the data cache (${this.deps.dir}) is full (${code}); ${then} once there is room (lower --cache-max below the free space)`);
  }

  /** Evicts what must go for `ref` to fit, or throws saying what holds the space. */
  private makeRoom(ref: DataRef): void {
    const others = this.index.list().filter((e) => e.digest !== ref.digest);
    const plan = planEviction(this.candidates(others), this.deps.budgetBytes, ref.sizeBytes);
    if (!plan.fits) throw new CacheFullError(`data set sha256:${ref.digest} does not fit the data cache: ${plan.reason}`);
    for (const digest of plan.evict) {
      if (this.index.removeIfFree(digest) !== 'removed') continue;
      this.counters.evictions++;
      this.deps.logger.info({ digest }, 'data cache: evicted (least recently used)');
      void this.discard(digest).catch((err: unknown) => this.deps.logger.warn({ digest, err: errorMessage(err) }, 'data cache: could not delete an evicted entry'));
    }
  }

  private discard(digest: string): Promise<void> {
    return discardEntry(this.deps.dir, digest, this.deps.clock.now());
  }

  private async *counted(digest: string, chunks: AsyncIterable<OffsetChunk>, from: number, total: number, progress: (p: DataProgress) => void, add: (n: number) => void): AsyncIterable<OffsetChunk> {
    let at = from;
    for await (const c of chunks) {
      at += c.data.length;
      // A source (an url, a hostile master) may send more than it announced: never onto the disk.
      if (at > total) throw new DataCorruptError(`data set sha256:${digest}: the source sent more than its ${total} bytes; the download was discarded`);
      add(c.data.length);
      progress({ receivedBytes: at, totalBytes: total });
      yield c;
    }
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}
