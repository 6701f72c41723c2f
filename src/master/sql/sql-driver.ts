// The narrow SQL boundary of the master's stores: prepared statements, transactions, DDL. SQL is
// written once with `?` placeholders (or `@name` with one object argument); the PostgreSQL driver
// rewrites them to $1..$n. Synchronous on purpose: every caller of the stores is (see pg-driver.ts).

export type SqlDialect = 'sqlite' | 'postgres';

export interface SqlStatement {
  run(...params: unknown[]): { changes: number };
  get(...params: unknown[]): unknown;
  all(...params: unknown[]): unknown[];
  iterate(...params: unknown[]): IterableIterator<unknown>;
}

export interface SqlDriver {
  readonly dialect: SqlDialect;
  prepare(sql: string): SqlStatement;
  /** Runs `fn` in one transaction; a nested call joins the outer one. Rolled back when `fn` throws. */
  transaction<T>(fn: () => T): T;
  /** True inside transaction(). */
  readonly inTransaction: boolean;
  /** Runs DDL or several statements (no parameters). */
  exec(sql: string): void;
  /** Idempotent. */
  close(): void;
}

/** Where the master keeps its state: the SQLite file (the default) or a PostgreSQL database. */
export type StoreLocation =
  /** externalCheckpoints: a WalCheckpointer runs for this file, so the connection never checkpoints in a commit. */
  | { kind: 'sqlite'; path: string; externalCheckpoints?: boolean }
  | { kind: 'postgres'; url: string };
