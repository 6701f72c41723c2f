// Opens a connection to the master's database wherever it is kept, migrated: SQLite with the
// caller's pragmas, or PostgreSQL (one connection, and its thread, per store, as SQLite has one
// connection per store).
import { MASTER_SCHEMA } from '../migrations.js';
import { MASTER_PG_SCHEMA } from '../pg-migrations.js';
import { migratePg } from './pg-migrate.js';
import { PgDriver } from './pg-driver.js';
import { SqliteDriver } from './sqlite-driver.js';
import type { SqlDriver, StoreLocation } from './sql-driver.js';

/** A path is SQLite's (":memory:" for tests). */
export function openMasterSql(where: string | StoreLocation, sqlitePragmas: readonly string[]): SqlDriver {
  const loc: StoreLocation = typeof where === 'string' ? { kind: 'sqlite', path: where } : where;
  if (loc.kind === 'sqlite') return SqliteDriver.open(loc.path, sqlitePragmas, MASTER_SCHEMA);
  const db = PgDriver.open(loc.url);
  try {
    migratePg(db, MASTER_PG_SCHEMA);
  } catch (err) {
    db.close();
    throw err;
  }
  return db;
}
