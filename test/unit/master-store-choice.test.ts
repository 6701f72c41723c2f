// `--store` / HIVEMIND_STORE: SQLite in the data dir by default, a postgres:// URL checked once,
// and the password never in a message.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { compileMasterConfig, compileStoreChoice } from '../../src/config/master-config.js';
import { ConfigError } from '../../src/common/errors.js';

test('default: SQLite at <data dir>/master.db', () => {
  const c = compileMasterConfig({ env: {}, flags: { dataDir: '/srv/hm' } });
  assert.deepEqual(c.store, { kind: 'sqlite', path: '/srv/hm/master.db' });
});

test('a postgres URL from the flag or HIVEMIND_STORE; shown with the password replaced', () => {
  const url = 'postgres://hm:s3cret@db.example:5432/hivemind';
  const c = compileMasterConfig({ env: { HIVEMIND_STORE: url }, flags: { dataDir: '/srv/hm' } });
  assert.equal(c.store.kind, 'postgres');
  assert.ok(c.store.kind === 'postgres' && c.store.url === url && !c.store.shown.includes('s3cret') && c.store.shown.includes('db.example'));
  const f = compileMasterConfig({ env: { HIVEMIND_STORE: 'postgres://other/x' }, flags: { dataDir: '/srv/hm', store: url } });
  assert.ok(f.store.kind === 'postgres' && f.store.url === url, 'the flag wins over the environment');
});

test('refused: not a URL, another scheme, no database; the message never holds the password', () => {
  for (const bad of ['db.example:5432', 'mysql://u:s3cret@db/x', 'postgres://u:s3cret@db.example', 'postgres://u:s3cret@db.example/']) {
    assert.throws(() => compileStoreChoice(bad, '/d'), (e: unknown) => e instanceof ConfigError && !e.message.includes('s3cret') && /--store/.test(e.message), bad);
  }
});
