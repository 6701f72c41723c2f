// The master's index of data sets in SQLite (the same master.db, its own connection): data sets by
// digest, the names pointing at them, interrupted uploads (digest and declared size), and the
// task_data references that keep a data set from being removed while a live task needs it.
import { openMasterSql } from './sql/open-master-sql.js';
import type { SqlDriver as Db, StoreLocation } from './sql/sql-driver.js';
import { DataKind } from '../protocol/gen/hivemind/v1/common.js';
import { TaskState } from '../protocol/gen/hivemind/v1/common.js';
import { TERMINAL_STATES } from './store-rows.js';

/**
 * Removed digests remembered for reclaiming them on nodes. A node reports what it holds every
 * interval, so one that is online learns of a removal within seconds; the bound only matters for
 * nodes away for very long (their cache then evicts by LRU as usual).
 */
export const DATA_REMOVED_KEPT = 10_000;

export interface DataSetRow {
  /** 64 lowercase hex digits (no "sha256:" prefix). */
  sha256: string;
  size: number;
  kind: DataKind;
  createdAt: number;
  /** Sorted. */
  names: string[];
}

export interface UploadRow {
  sha256: string;
  size: number;
  kind: DataKind;
  updatedAt: number;
}

/** A live task that references a data set. */
export interface DataReference {
  taskId: string;
  state: TaskState;
  path: string;
}

interface RawDataSet {
  sha256: string;
  size: number;
  kind: number;
  created_at: number;
  names: string | null;
}

function fromRaw(r: RawDataSet): DataSetRow {
  return {
    sha256: r.sha256,
    size: r.size,
    kind: r.kind as DataKind,
    createdAt: r.created_at,
    names: r.names ? r.names.split('\n').sort() : [],
  };
}

// Names cannot hold a line break (data-rules.ts), so it joins them safely.
const selectSet = (agg: string) => `SELECT s.sha256, s.size, s.kind, s.created_at, (SELECT ${agg} FROM data_names n WHERE n.sha256 = s.sha256) AS names FROM data_sets s`;

/** The SQL that differs between the dialects. */
const DIALECT = {
  sqlite: {
    selectSet: selectSet('group_concat(n.name, char(10))'),
    removedAmong: 'SELECT r.sha256 FROM data_removed r JOIN json_each(?) j ON j.value = r.sha256',
  },
  postgres: {
    selectSet: selectSet('string_agg(n.name, chr(10))'),
    removedAmong: 'SELECT r.sha256 FROM data_removed r JOIN json_array_elements_text(?::json) j(value) ON j.value = r.sha256',
  },
} as const;

export class DataStore {
  private closed = false;

  private readonly sql: (typeof DIALECT)[keyof typeof DIALECT];

  private constructor(private readonly db: Db) {
    this.sql = DIALECT[db.dialect];
  }

  /** Opens (and migrates, if the master store has not yet) the master's database: master.db at a path, or PostgreSQL. */
  static open(where: string | StoreLocation): DataStore {
    return new DataStore(openMasterSql(where));
  }

  get(sha256: string): DataSetRow | undefined {
    const r = this.db.prepare(`${this.sql.selectSet} WHERE s.sha256 = ?`).get(sha256) as RawDataSet | undefined;
    return r && fromRaw(r);
  }

  /** The digest a name points at. */
  resolveName(name: string): string | undefined {
    return (this.db.prepare('SELECT sha256 FROM data_names WHERE name = ?').get(name) as { sha256: string } | undefined)?.sha256;
  }

  /** Data sets newest first, starting after the cursor (created_at, sha256) when given. */
  *iterate(after?: { at: number; id: string }): Generator<DataSetRow> {
    const rows = after
      ? this.db.prepare(`${this.sql.selectSet} WHERE (s.created_at, s.sha256) < (?, ?) ORDER BY s.created_at DESC, s.sha256 DESC`).iterate(after.at, after.id)
      : this.db.prepare(`${this.sql.selectSet} ORDER BY s.created_at DESC, s.sha256 DESC`).iterate();
    for (const r of rows) yield fromRaw(r as RawDataSet);
  }

  /** Records a verified data set (and drops its upload row); a second insert of the digest is a no-op. */
  insert(row: { sha256: string; size: number; kind: DataKind; createdAt: number }): void {
    this.db.transaction(() => {
      this.db.prepare('INSERT INTO data_sets (sha256, size, kind, created_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING').run(row.sha256, row.size, row.kind, row.createdAt);
      this.db.prepare('DELETE FROM data_uploads WHERE sha256 = ?').run(row.sha256);
      // Put again after a removal: nodes may keep (and use) their copies.
      this.db.prepare('DELETE FROM data_removed WHERE sha256 = ?').run(row.sha256);
    });
  }

  /** Points `name` at `sha256`, moving it from the data set it pointed at before, if any. */
  setName(name: string, sha256: string, at: number): void {
    this.db.prepare('INSERT INTO data_names (name, sha256, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET sha256 = excluded.sha256, updated_at = excluded.updated_at').run(name, sha256, at);
  }

  /**
   * Removes the data set and its names unless a live task references it; returns the live
   * references instead (nothing removed) when there are any. One transaction, so a reference
   * added at the same moment either blocks the removal or comes after it.
   */
  remove(sha256: string, at = Date.now()): { removed: DataSetRow } | { references: DataReference[] } | undefined {
    return this.db.transaction(() => {
      const row = this.get(sha256);
      if (!row) return undefined;
      const references = this.liveReferences(sha256);
      if (references.length > 0) return { references };
      this.db.prepare('DELETE FROM data_sets WHERE sha256 = ?').run(sha256);
      this.db.prepare('INSERT INTO data_removed (sha256, removed_at) VALUES (?, ?) ON CONFLICT(sha256) DO UPDATE SET removed_at = excluded.removed_at').run(sha256, at);
      this.db.prepare('DELETE FROM data_removed WHERE sha256 NOT IN (SELECT sha256 FROM data_removed ORDER BY removed_at DESC, sha256 DESC LIMIT ?)').run(DATA_REMOVED_KEPT);
      return { removed: row };
    });
  }

  /** Of `digests` (64 hex digits each; a node's report, at most a few thousand), those removed here. */
  removedAmong(digests: readonly string[]): string[] {
    if (digests.length === 0) return [];
    const rows = this.db.prepare(this.sql.removedAmong).all(JSON.stringify(digests)) as { sha256: string }[];
    return rows.map((r) => r.sha256);
  }

  /** Live (queued or running) tasks that reference the data set, oldest first. */
  liveReferences(sha256: string): DataReference[] {
    const terminal = [...TERMINAL_STATES].join(',');
    const rows = this.db
      .prepare(`SELECT d.task_id, t.state, d.path FROM task_data d JOIN tasks t ON t.id = d.task_id WHERE d.sha256 = ? AND t.state NOT IN (${terminal}) ORDER BY t.created_at, t.id`)
      .all(sha256) as { task_id: string; state: number; path: string }[];
    return rows.map((r) => ({ taskId: r.task_id, state: r.state as TaskState, path: r.path }));
  }

  /** Part 2's entry point: a task that mounts the data set at `path`. Written with the task. */
  addTaskReference(taskId: string, sha256: string, path: string): void {
    this.db.prepare('INSERT INTO task_data (task_id, sha256, path) VALUES (?, ?, ?)').run(taskId, sha256, path);
  }

  // ---- interrupted uploads

  getUpload(sha256: string): UploadRow | undefined {
    const r = this.db.prepare('SELECT sha256, size, kind, updated_at FROM data_uploads WHERE sha256 = ?').get(sha256) as { sha256: string; size: number; kind: number; updated_at: number } | undefined;
    return r && { sha256: r.sha256, size: r.size, kind: r.kind as DataKind, updatedAt: r.updated_at };
  }

  putUpload(u: UploadRow): void {
    this.db.prepare('INSERT INTO data_uploads (sha256, size, kind, updated_at) VALUES (?, ?, ?, ?) ON CONFLICT(sha256) DO UPDATE SET size = excluded.size, kind = excluded.kind, updated_at = excluded.updated_at').run(u.sha256, u.size, u.kind, u.updatedAt);
  }

  deleteUpload(sha256: string): void {
    this.db.prepare('DELETE FROM data_uploads WHERE sha256 = ?').run(sha256);
  }

  /** Interrupted uploads, least recently written first. */
  uploads(): UploadRow[] {
    return (this.db.prepare('SELECT sha256, size, kind, updated_at FROM data_uploads ORDER BY updated_at, sha256').all() as { sha256: string; size: number; kind: number; updated_at: number }[]).map((r) => ({
      sha256: r.sha256, size: r.size, kind: r.kind as DataKind, updatedAt: r.updated_at,
    }));
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
