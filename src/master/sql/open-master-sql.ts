// Opens a connection to the master's database wherever it is kept, migrated: SQLite with the
// caller's pragmas, or PostgreSQL (one connection, and its thread, per store, as SQLite has one
// connection per store).
import { MASTER_SCHEMA } from '../migrations.js';
import { MASTER_PG_SCHEMA } from '../pg-migrations.js';
import { migratePg } from './pg-migrate.js';
import { PgDriver } from './pg-driver.js';
import { SqliteDriver } from './sqlite-driver.js';
import type { SqlDriver, StoreLocation } from './sql-driver.js';

/**
 * Every connection of the master to its SQLite file: WAL with synchronous = NORMAL, so a commit
 * survives the master process dying (what the fault scenarios do) and only a power loss can take
 * the last commits, not corrupt the file; a commit then never fsyncs, only a checkpoint does.
 */
export const MASTER_SQLITE_PRAGMAS: readonly string[] = ['journal_mode = WAL', 'synchronous = NORMAL', 'foreign_keys = ON', 'busy_timeout = 5000'];

/**
 * With a WalCheckpointer (sql/wal-checkpointer.ts) running: no commit of this connection
 * checkpoints; the checkpointer only runs PASSIVE ones. No journal_size_limit either: with one, the
 * writer that starts a fully copied WAL over truncates the file back to the limit inside its
 * commit, on the event loop, and freeing that many blocks is slow where the disk discards them
 * (ext4 mounted `discard`, this machine: 30–434 ms per commit, the master's longest event-loop
 * blocks at 10,000 nodes, issue 21). The WAL is reused from its start instead, so it keeps the
 * largest size a burst between two checkpoints gave it, and the checkpointer's TRUNCATE at close
 * gives that back.
 */
export const EXTERNAL_CHECKPOINT_PRAGMAS: readonly string[] = ['wal_autocheckpoint = 0'];

/** A path is SQLite's (":memory:" for tests). */
export function openMasterSql(where: string | StoreLocation, sqlitePragmas: readonly string[] = MASTER_SQLITE_PRAGMAS): SqlDriver {
  const loc: StoreLocation = typeof where === 'string' ? { kind: 'sqlite', path: where } : where;
  if (loc.kind === 'sqlite') return SqliteDriver.open(loc.path, loc.externalCheckpoints ? [...sqlitePragmas, ...EXTERNAL_CHECKPOINT_PRAGMAS] : sqlitePragmas, MASTER_SCHEMA);
  const db = PgDriver.open(loc.url);
  try {
    migratePg(db, MASTER_PG_SCHEMA);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
