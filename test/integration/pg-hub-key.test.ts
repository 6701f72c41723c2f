// The hub's key in the real test PostgreSQL: two masters' connections racing on an empty table
// store one key and both read it; a later master reads the same one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { migratePg } from '../../src/master/sql/pg-migrate.js';
import { MASTER_PG_SCHEMA } from '../../src/master/pg-migrations.js';
import { DbHubKey, SqlHubKeyTable } from '../../src/master/hub-key.js';
import { generateWgKeyPair } from '../../src/tunnel/wg-keys.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { requirePostgres } from '../helpers/requirements.js';

test('hub key in PostgreSQL: the first insert wins, every master reads that key', async (t) => {
  if (!requirePostgres(t, testPgUrl())) return;
  const { url } = freshPgSchema();
  const dir = await mkdtemp(join(tmpdir(), 'hm-hubkey-'));
  const dbs: PgDriver[] = [];
  t.after(async () => {
    for (const d of dbs) d.close();
    await rm(dir, { recursive: true, force: true });
  });
  const open = () => {
    const db = PgDriver.open(url);
    migratePg(db, MASTER_PG_SCHEMA);
    dbs.push(db);
    return new SqlHubKeyTable(db);
  };
  const [a, b] = [open(), open()];
  assert.equal(a.read(), undefined);
  const ka = generateWgKeyPair().privateKey;
  const kb = generateWgKeyPair().privateKey;
  assert.equal(a.insertIfAbsent(ka, 1), ka);
  assert.equal(b.insertIfAbsent(kb, 2), ka, 'the second insert does nothing and reads the first key');
  assert.equal(await new DbHubKey(open(), dir).privateKey(), ka);
});
