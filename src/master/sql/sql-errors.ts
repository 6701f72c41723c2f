// Typed errors of the PostgreSQL driver. The SQLite driver throws better-sqlite3's own errors as
// it always has.
import { HivemindError } from '../../common/errors.js';

/** PostgreSQL's SQLSTATE for a unique violation. */
export const UNIQUE_VIOLATION = '23505';

/** A statement the database refused (constraint, syntax, ...): `sqlState` is PostgreSQL's code. */
export class SqlError extends HivemindError {
  constructor(message: string, readonly sqlState: string | undefined, options?: { cause?: unknown }) {
    super(sqlState === UNIQUE_VIOLATION ? 'STORE_UNIQUE_VIOLATION' : 'STORE_SQL_FAILED', message, options);
  }

  get isUniqueViolation(): boolean {
    return this.sqlState === UNIQUE_VIOLATION;
  }
}

/** The database cannot be reached or did not answer in time: the master cannot go on without it. */
export class StoreUnavailableError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('STORE_UNAVAILABLE', message, options);
  }
}

/** The first words of a statement, for messages (never its parameters: they may hold secrets' hashes). */
export function sqlHead(sql: string): string {
  const s = sql.replace(/\s+/g, ' ').trim();
  return s.length > 60 ? s.slice(0, 60) + '…' : s;
}

/** The URL with its password replaced, for logs and messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}
