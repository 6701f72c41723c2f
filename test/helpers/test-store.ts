// Which database the master's store tests run against: SQLite (the default) or, with
// HIVEMIND_TEST_STORE=postgres, the test PostgreSQL cluster (scripts/test-postgres.sh), each store
// in a fresh schema of its own, dropped when the test process exits. The same test files run
// twice (scripts/test.sh's PostgreSQL pass), not copies.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { randomBytes } from 'node:crypto';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import type { StoreLocation } from '../../src/master/sql/sql-driver.js';

export const TEST_STORE: 'sqlite' | 'postgres' = process.env.HIVEMIND_TEST_STORE === 'postgres' ? 'postgres' : 'sqlite';

/** HIVEMIND_TEST_PG, else the URL scripts/test-postgres.sh wrote to .tools/test-pg.url; undefined when neither. */
export function testPgUrl(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.HIVEMIND_TEST_PG) return env.HIVEMIND_TEST_PG;
  // dist/test/helpers -> the checkout
  const file = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '.tools', 'test-pg.url');
  return existsSync(file) ? readFileSync(file, 'utf8').trim() || undefined : undefined;
}

let admin: PgDriver | undefined;
const schemas: string[] = [];

function adminDriver(): PgDriver {
  if (admin) return admin;
  const url = testPgUrl();
  // Asked for PostgreSQL explicitly: a missing server fails the run, locally as under CI.
  if (!url) throw new Error('HIVEMIND_TEST_STORE=postgres but no test PostgreSQL: run bash scripts/test-postgres.sh (or set HIVEMIND_TEST_PG)');
  admin = PgDriver.open(url);
  process.on('exit', () => {
    for (const s of schemas) {
      try {
        admin!.exec(`DROP SCHEMA IF EXISTS ${s} CASCADE`);
      } catch (err) {
        process.stderr.write(`test-store: cannot drop schema ${s}: ${(err as Error).message}\n`);
      }
    }
    admin!.close();
  });
  return admin;
}

/** A fresh, empty PostgreSQL schema and the URL that works in it (search_path in the URL's options). */
export function freshPgSchema(): { url: string; schema: string } {
  const db = adminDriver();
  const schema = `hm_test_${randomBytes(6).toString('hex')}`;
  db.exec(`CREATE SCHEMA ${schema}`);
  schemas.push(schema);
  const base = new URL(testPgUrl()!);
  base.searchParams.set('options', `-c search_path=${schema}`);
  return { url: base.toString(), schema };
}

/** A fresh master database: ":memory:" SQLite, or a fresh PostgreSQL schema. */
export function freshStore(): string | StoreLocation {
  return TEST_STORE === 'postgres' ? { kind: 'postgres', url: freshPgSchema().url } : ':memory:';
}

/** For Master.create: undefined (SQLite in its data dir) or a fresh PostgreSQL schema. */
export function masterStoreOption(): { store?: StoreLocation } {
  return TEST_STORE === 'postgres' ? { store: { kind: 'postgres', url: freshPgSchema().url } } : {};
}
