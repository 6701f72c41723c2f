// The master lease in the real test PostgreSQL: taken once, refused to a second holder while it
// runs (naming the holder and the time left by the database's clock), renewed only by its holder
// and epoch, never revived once ended, released at once, and the epoch growing at each change;
// and the fence the store checks in the transaction that assigns tasks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { migratePg } from '../../src/master/sql/pg-migrate.js';
import { MASTER_PG_SCHEMA } from '../../src/master/pg-migrations.js';
import { SqlLeaseStore } from '../../src/master/lease/lease-store.js';
import { LeaseLostError } from '../../src/master/lease/lease-errors.js';
import { MasterStore } from '../../src/master/master-store.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { requirePostgres } from '../helpers/requirements.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('lease in PostgreSQL: one holder at a time, by the database clock, fenced by holder and epoch', async (t) => {
  if (!requirePostgres(t, testPgUrl())) return;
  const { url } = freshPgSchema();
  const open = () => {
    const db = PgDriver.open(url);
    migratePg(db, MASTER_PG_SCHEMA);
    return new SqlLeaseStore(db);
  };
  const a = open();
  const b = open();
  t.after(() => { a.close(); b.close(); });

  const first = a.tryAcquire('a', 1000);
  assert.deepEqual(first, { held: true, epoch: 1 });
  const refused = b.tryAcquire('b', 1000);
  assert.equal(refused.held, false);
  assert.ok(!refused.held && refused.holder === 'a' && refused.remainingMs > 500 && refused.remainingMs <= 1000, JSON.stringify(refused));
  // The same process asking again does not get a second epoch while its lease runs.
  assert.equal(a.tryAcquire('a', 1000).held, false);

  assert.equal(a.renew('a', 1, 1000), true);
  assert.equal(b.renew('b', 1, 1000), false, 'not the holder');
  assert.equal(a.renew('a', 2, 1000), false, 'not the epoch');

  await sleep(1100);
  assert.equal(a.renew('a', 1, 1000), false, 'an ended lease is not revived');
  assert.deepEqual(b.tryAcquire('b', 1000), { held: true, epoch: 2 });
  assert.equal(a.renew('a', 1, 1000), false, 'the old holder is fenced');

  b.release('a', 2); // not b's name: nothing happens
  assert.equal(a.tryAcquire('a', 1000).held, false);
  b.release('b', 2);
  assert.deepEqual(a.tryAcquire('a', 1000), { held: true, epoch: 3 }, 'released: taken at once');
});

test('the write fence: the store assigns only while its master holds the lease term by the database clock', (t) => {
  if (!requirePostgres(t, testPgUrl())) return;
  const { url } = freshPgSchema();
  const store = MasterStore.open({ kind: 'postgres', url });
  const lease = new SqlLeaseStore(PgDriver.open(url));
  t.after(() => { store.close(); lease.close(); });
  store.assertLeaseHeld(); // no fence set (SQLite, or a single master): no check
  let epoch = 0;
  store.setLeaseFence({ holder: 'a', epoch: () => epoch });
  assert.throws(() => store.transaction(() => store.assertLeaseHeld()), (e: unknown) => e instanceof LeaseLostError && e.code === 'LEASE_LOST' && /no longer holds the master lease \(epoch 0\)/.test(e.message));
  const claim = lease.tryAcquire('a', 5000);
  assert.ok(claim.held);
  epoch = claim.epoch;
  store.transaction(() => store.assertLeaseHeld());
  lease.release('a', epoch);
  assert.throws(() => store.transaction(() => store.assertLeaseHeld()), LeaseLostError);
});
