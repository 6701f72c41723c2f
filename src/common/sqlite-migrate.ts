// Opening and migrating the SQLite databases of the master and the worker: one runner, each side
// with its own list of migrations. The schema version is PRAGMA user_version (migration N,
// 1-based, runs when user_version < N), the on-disk format both sides have always used.
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { sqliteOpenOptions } from './native-sqlite.js';

/** The part of a better-sqlite3 Database the runner uses (tests hand in fakes). */
export interface MigratableDb {
  pragma(source: string, options?: { simple?: boolean }): unknown;
  exec(source: string): unknown;
  transaction(fn: () => void): () => void;
}

export interface Schema {
  /** Append only: never edit a migration that has shipped, add a new one. */
  migrations: readonly string[];
  /** The error for a database written by a newer build (its version is above ours). */
  tooNew(found: number, latest: number): Error;
}

/**
 * Brings the database to the latest schema, all pending migrations in one transaction (a failed
 * one leaves the database as it was). Returns the version it started from and the one it ends at.
 */
export function migrate(db: MigratableDb, schema: Schema): { from: number; to: number } {
  const { migrations } = schema;
  const from = db.pragma('user_version', { simple: true }) as number;
  if (from > migrations.length) throw schema.tooNew(from, migrations.length);
  if (from === migrations.length) return { from, to: from };
  db.transaction(() => {
    for (let v = from; v < migrations.length; v++) {
      db.exec(migrations[v]!);
      // user_version cannot be bound as a parameter; v is an integer we control.
      db.pragma(`user_version = ${v + 1}`);
    }
  })();
  return { from, to: migrations.length };
}

/**
 * Opens (creating if needed) the database at `file` (":memory:" for tests), sets `pragmas` in
 * order and migrates it; the handle is closed again when any of that fails.
 */
export function openSqlite(file: string, pragmas: readonly string[], schema: Schema): Db {
  const db = new Database(file, sqliteOpenOptions());
  try {
    for (const p of pragmas) db.pragma(p);
    migrate(db, schema);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
