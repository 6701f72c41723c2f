// The node's data cache index: one SQLite file of its own under the cache dir, so that the worker
// and the `hivemind worker cache` commands (another process) see the same entries and leases, and
// a lease taken by one is respected by the other (every change is one transaction).
import type { Database as Db } from 'better-sqlite3';
import { HivemindError } from '../../common/errors.js';
import { openSqlite, type Schema } from '../../common/sqlite-migrate.js';

import type { CacheEntry, CacheDataKind as DataKind, CacheEntryState as EntryState } from '../contracts.js';

export type { CacheEntry, DataKind, EntryState };

const SCHEMA: Schema = {
  migrations: [
    `CREATE TABLE entries (
       digest TEXT PRIMARY KEY,
       kind TEXT NOT NULL CHECK (kind IN ('file', 'dir')),
       size_bytes INTEGER NOT NULL,
       state TEXT NOT NULL CHECK (state IN ('downloading', 'ready')),
       pinned INTEGER NOT NULL DEFAULT 0,
       created_at INTEGER NOT NULL,
       last_used_at INTEGER NOT NULL,
       uses INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE leases (
       digest TEXT NOT NULL,
       holder TEXT NOT NULL,
       acquired_at INTEGER NOT NULL,
       PRIMARY KEY (digest, holder)
     );`,
  ],
  tooNew: (found, latest) =>
    new HivemindError('CACHE_INDEX_TOO_NEW', `the data cache index has schema version ${found}, newer than this hivemind knows (${latest}): upgrade hivemind, or remove the cache dir to start it afresh`),
};

interface EntryRow {
  digest: string;
  kind: DataKind;
  size_bytes: number;
  state: EntryState;
  pinned: number;
  created_at: number;
  last_used_at: number;
  uses: number;
  leases: number;
}

const SELECT = `SELECT e.*, (SELECT COUNT(*) FROM leases l WHERE l.digest = e.digest) AS leases FROM entries e`;

function toEntry(r: EntryRow): CacheEntry {
  return {
    digest: r.digest,
    kind: r.kind,
    sizeBytes: r.size_bytes,
    state: r.state,
    pinned: r.pinned === 1,
    createdAt: r.created_at,
    lastUsedAt: r.last_used_at,
    uses: r.uses,
    leases: r.leases,
  };
}

export class CacheIndex {
  private constructor(private readonly db: Db) {}

  /** Opens (creating) the index at `file` (":memory:" in tests). */
  static open(file: string): CacheIndex {
    return new CacheIndex(openSqlite(file, ['journal_mode = WAL', 'busy_timeout = 5000', 'synchronous = NORMAL'], SCHEMA));
  }

  list(): CacheEntry[] {
    return (this.db.prepare(`${SELECT} ORDER BY e.last_used_at DESC, e.digest`).all() as EntryRow[]).map(toEntry);
  }

  get(digest: string): CacheEntry | undefined {
    const row = this.db.prepare(`${SELECT} WHERE e.digest = ?`).get(digest) as EntryRow | undefined;
    return row ? toEntry(row) : undefined;
  }

  /** Records a download starting (or going on after a restart: the row is kept as it is). */
  beginDownload(digest: string, kind: DataKind, sizeBytes: number, now: number): void {
    this.db
      .prepare(`INSERT INTO entries (digest, kind, size_bytes, state, created_at, last_used_at) VALUES (?, ?, ?, 'downloading', ?, ?)
                ON CONFLICT (digest) DO UPDATE SET kind = excluded.kind, size_bytes = excluded.size_bytes WHERE state = 'downloading'`)
      .run(digest, kind, sizeBytes, now, now);
  }

  markReady(digest: string, now: number): void {
    this.db.prepare(`UPDATE entries SET state = 'ready', last_used_at = ? WHERE digest = ?`).run(now, digest);
  }

  /** A task was handed the entry. */
  touch(digest: string, now: number): void {
    this.db.prepare('UPDATE entries SET last_used_at = ?, uses = uses + 1 WHERE digest = ?').run(now, digest);
  }

  setPinned(digest: string, pinned: boolean): boolean {
    return this.db.prepare('UPDATE entries SET pinned = ? WHERE digest = ?').run(pinned ? 1 : 0, digest).changes === 1;
  }

  /** Deletes the entry's row unless it is leased; says which happened. */
  removeIfFree(digest: string): 'removed' | 'leased' | 'absent' {
    return this.db.transaction((): 'removed' | 'leased' | 'absent' => {
      const leases = (this.db.prepare('SELECT COUNT(*) AS n FROM leases WHERE digest = ?').get(digest) as { n: number }).n;
      if (leases > 0) return 'leased';
      return this.db.prepare('DELETE FROM entries WHERE digest = ?').run(digest).changes === 1 ? 'removed' : 'absent';
    }).immediate();
  }

  /** Deletes the row whatever holds it: for an entry found missing or corrupt on disk. */
  forget(digest: string): void {
    this.db.prepare('DELETE FROM entries WHERE digest = ?').run(digest);
  }

  addLease(digest: string, holder: string, now: number): void {
    this.db.prepare('INSERT OR IGNORE INTO leases (digest, holder, acquired_at) VALUES (?, ?, ?)').run(digest, holder, now);
  }

  dropLease(digest: string, holder: string): void {
    this.db.prepare('DELETE FROM leases WHERE digest = ? AND holder = ?').run(digest, holder);
  }

  /** At the worker's start: leases are the running process's, and it has just begun. */
  clearLeases(): void {
    this.db.prepare('DELETE FROM leases').run();
  }

  close(): void {
    if (this.db.open) this.db.close();
  }
}
