// Two masters in one process on one PostgreSQL schema and one data dir: the second one is a
// standby (its /readyz reason, every admin call refused with UNAVAILABLE "standby master: …"), the
// first one loses its lease when another holder takes it over in the database (it stops serving,
// closes, and its owner is told), and the standby takes over once the lease has ended.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { Master } from '../../src/master/master.js';
import { AdminClient, MasterCallError } from '../../src/client/admin-client.js';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { requirePostgres } from '../helpers/requirements.js';
import { waitFor } from '../helpers/cli-process.js';

test('standby refuses every call until it takes over; an active master whose lease is taken stops serving and says why', async (t) => {
  if (!requirePostgres(t, testPgUrl())) return;
  const { url } = freshPgSchema();
  const dataDir = await mkdtemp(join(tmpdir(), 'hm-standby-'));
  const lost: string[] = [];
  const make = () => Master.create(
    { listenAddress: '127.0.0.1:0', gatewayListen: 'off', dataDir, store: { kind: 'postgres', url }, leaseMs: 1000, shutdownGraceMs: 200 },
    { onLeaseLost: (reason) => lost.push(reason) },
  );
  const a = await make();
  const b = await make();
  const db = PgDriver.open(url);
  const clients: AdminClient[] = [];
  t.after(async () => {
    for (const c of clients) c.close();
    await a.close();
    await b.close();
    db.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  const token = (await readFile(a.adminTokenPath, 'utf8')).trim();
  const aAddress = await a.start();
  const bAddress = await b.start();
  assert.deepEqual(a.readiness(), { ready: true });
  const holderA = (db.prepare('SELECT holder FROM master_lease').get() as { holder: string }).holder;
  assert.deepEqual(b.readiness(), { ready: false, reason: `standby: master ${holderA} holds the lease` });

  const toA = AdminClient.connect(aAddress, token);
  const toB = AdminClient.connect(bAddress, token);
  clients.push(toA, toB);
  await toA.listTasks();
  await assert.rejects(toB.listTasks(), (e: unknown) => e instanceof MasterCallError && e.status === status.UNAVAILABLE && e.message.includes(`standby master: ${holderA} is active`));

  // Another holder takes the lease by hand (as a master would after A froze past its end): A's
  // next renewal is refused, and A stops serving at once.
  db.prepare("UPDATE master_lease SET holder = 'intruder', epoch = epoch + 1").run();
  await waitFor('a to lose its lease', () => lost.length > 0 || undefined, 5000, 20);
  assert.match(lost[0]!, /^the master lease \(epoch 1\) was taken over or had ended$/);
  assert.deepEqual(a.readiness(), { ready: false, reason: `lease lost: ${lost[0]}` });
  await assert.rejects(toA.listTasks(), (e: unknown) => e instanceof MasterCallError && e.status === status.UNAVAILABLE);

  // B takes it once the intruder's lease has ended (nobody renews it), and serves.
  await waitFor('b to take over', () => b.readiness().ready || undefined, 5000, 20);
  assert.deepEqual(await toB.listTasks(), []);
  assert.equal((db.prepare('SELECT epoch FROM master_lease').get() as { epoch: number }).epoch, 3);
  // A third master is a standby of B; closing it leaves B's lease alone.
  const c = await make();
  await c.start();
  const cr = c.readiness();
  assert.ok(!cr.ready && /^standby: master \S+ holds the lease$/.test(cr.reason), JSON.stringify(cr));
  await c.close();
  assert.ok(b.readiness().ready);
  assert.deepEqual(await toB.listTasks(), []);
  // A clean close hands the lease over at once (ended now, not in a second).
  await b.close();
  const row = db.prepare('SELECT expires_at <= now() AS ended FROM master_lease').get() as { ended: boolean };
  assert.equal(row.ended, true);
});
