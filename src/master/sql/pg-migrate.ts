// Migrating a PostgreSQL schema: the version in a one-row table schema_version (PostgreSQL has no
// user_version), all pending migrations in one transaction under an advisory lock, so two masters
// starting together migrate once.
import type { Schema } from '../../common/sqlite-migrate.js';
import type { SqlDriver } from './sql-driver.js';

/** pg_advisory_xact_lock's key for migrations (any constant; "hivemind" in ASCII, truncated). */
const MIGRATION_LOCK = 0x6869766d;

export function migratePg(db: SqlDriver, schema: Schema): { from: number; to: number } {
  const { migrations } = schema;
  return db.transaction(() => {
    db.exec(`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`);
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)');
    const row = db.prepare('SELECT version FROM schema_version').get() as { version: number } | undefined;
    const from = row?.version ?? 0;
    if (from > migrations.length) throw schema.tooNew(from, migrations.length);
    if (from === migrations.length) return { from, to: from };
    for (let v = from; v < migrations.length; v++) db.exec(migrations[v]!);
    if (row) db.prepare('UPDATE schema_version SET version = ?').run(migrations.length);
    else db.prepare('INSERT INTO schema_version (version) VALUES (?)').run(migrations.length);
    return { from, to: migrations.length };
  });
}
