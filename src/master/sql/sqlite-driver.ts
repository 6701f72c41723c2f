// The SQLite driver: better-sqlite3 as it is. Statements are better-sqlite3's own (no wrapper, so no
// per-query cost), and transactions its own (nested ones join through savepoints).
import type { Database as Db } from 'better-sqlite3';
import { openSqlite, type Schema } from '../../common/sqlite-migrate.js';
import type { SqlDriver, SqlStatement } from './sql-driver.js';

export class SqliteDriver implements SqlDriver {
  readonly dialect = 'sqlite' as const;
  private closed = false;

  constructor(private readonly db: Db) {}

  /** Opens (creating if needed) the file, sets `pragmas` in order and migrates it. */
  static open(path: string, pragmas: readonly string[], schema: Schema): SqliteDriver {
    return new SqliteDriver(openSqlite(path, pragmas, schema));
  }

  get inTransaction(): boolean {
    return this.db.inTransaction;
  }

  prepare(sql: string): SqlStatement {
    return this.db.prepare(sql) as unknown as SqlStatement;
  }

  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn)();
  }

  exec(sql: string): void {
    this.db.exec(sql);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
