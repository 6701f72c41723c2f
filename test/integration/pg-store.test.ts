// The PostgreSQL driver against the real test cluster (scripts/test-postgres.sh): synchronous
// statements, typed errors, transactions (nested ones as savepoints), migrations (once, refusing a
// newer schema), a dead database as an error in bounded time, and the SQL each store writes per
// dialect (data sets' names, removed digests, services' conflicts, replica lookups by rowid).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { migratePg } from '../../src/master/sql/pg-migrate.js';
import { SqlError, StoreUnavailableError } from '../../src/master/sql/sql-errors.js';
import { MASTER_PG_SCHEMA } from '../../src/master/pg-migrations.js';
import { DataStore } from '../../src/master/data-store.js';
import { ServiceStore } from '../../src/master/service-store.js';
import { MasterStore } from '../../src/master/master-store.js';
import { DataKind, TaskSpec, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { requirePostgres } from '../helpers/requirements.js';
import type { TaskRow } from '../../src/master/store-rows.js';

function schemaUrl(t: TestContext): string | undefined {
  if (!requirePostgres(t, testPgUrl())) return undefined;
  return freshPgSchema().url;
}

test('statements: BIGINT as numbers, typed unique violation with the SQL in the message, rows changed', (t) => {
  const url = schemaUrl(t);
  if (!url) return;
  const db = PgDriver.open(url);
  t.after(() => db.close());
  db.exec('CREATE TABLE x (id TEXT PRIMARY KEY, n BIGINT NOT NULL)');
  const ins = db.prepare('INSERT INTO x (id, n) VALUES (?, ?)');
  assert.equal(ins.run('a', 2 ** 40).changes, 1);
  assert.deepEqual(db.prepare('SELECT id, n FROM x WHERE id = @id').get({ id: 'a' }), { id: 'a', n: 2 ** 40 });
  assert.deepEqual(db.prepare('SELECT count(*) AS c FROM x').get(), { c: 1 });
  assert.throws(() => ins.run('a', 1), (e: unknown) => e instanceof SqlError && e.isUniqueViolation && e.code === 'STORE_UNIQUE_VIOLATION' && /INSERT INTO x/.test(e.message) && !/hivemind-test@/.test(e.message));
  assert.throws(() => db.prepare('SELEC nonsense').get(), (e: unknown) => e instanceof SqlError && e.code === 'STORE_SQL_FAILED');
  assert.equal(db.prepare('UPDATE x SET n = 0 WHERE id = ?').run('none').changes, 0);
});

test('transactions: commit, rollback on throw, a nested failure caught by the caller rolls back only its part', (t) => {
  const url = schemaUrl(t);
  if (!url) return;
  const db = PgDriver.open(url);
  t.after(() => db.close());
  db.exec('CREATE TABLE x (id TEXT PRIMARY KEY)');
  const ins = db.prepare('INSERT INTO x (id) VALUES (?)');
  assert.throws(() => db.transaction(() => {
    ins.run('gone');
    throw new Error('boom');
  }), /boom/);
  db.transaction(() => {
    ins.run('kept');
    assert.equal(db.inTransaction, true);
    assert.throws(() => db.transaction(() => {
      ins.run('inner');
      ins.run('kept'); // unique violation inside the nested part
    }), SqlError);
    ins.run('after');
  });
  assert.equal(db.inTransaction, false);
  assert.deepEqual((db.prepare('SELECT id FROM x ORDER BY id').all() as { id: string }[]).map((r) => r.id), ['after', 'kept']);
});

test('migrations: once (a second open changes nothing), a newer schema refused', (t) => {
  const url = schemaUrl(t);
  if (!url) return;
  const db = PgDriver.open(url);
  t.after(() => db.close());
  assert.deepEqual(migratePg(db, MASTER_PG_SCHEMA), { from: 0, to: MASTER_PG_SCHEMA.migrations.length });
  assert.deepEqual(migratePg(db, MASTER_PG_SCHEMA), { from: MASTER_PG_SCHEMA.migrations.length, to: MASTER_PG_SCHEMA.migrations.length });
  db.prepare('UPDATE schema_version SET version = ?').run(99);
  assert.throws(() => MasterStore.open({ kind: 'postgres', url }), /schema version 99 is newer than this master/);
});

test('a database that is not there: StoreUnavailableError in bounded time, the password not in it', () => {
  const start = Date.now();
  assert.throws(() => PgDriver.open('postgres://u:s3cret@127.0.0.1:1/none', { timeoutMs: 2000 }), (e: unknown) => e instanceof StoreUnavailableError && /cannot connect/.test(e.message) && !e.message.includes('s3cret'));
  assert.ok(Date.now() - start < 5000);
});

test('data store on PostgreSQL: names joined, insert twice a no-op, removal remembered, removedAmong', (t) => {
  const url = schemaUrl(t);
  if (!url) return;
  const ds = DataStore.open({ kind: 'postgres', url });
  t.after(() => ds.close());
  const a = 'a'.repeat(64);
  const b = 'b'.repeat(64);
  ds.insert({ sha256: a, size: 10, kind: DataKind.DATA_KIND_FILE, createdAt: 1 });
  ds.insert({ sha256: a, size: 10, kind: DataKind.DATA_KIND_FILE, createdAt: 1 });
  ds.setName('one', a, 2);
  ds.setName('two', a, 3);
  assert.deepEqual(ds.get(a)?.names, ['one', 'two']);
  assert.deepEqual([...ds.iterate()].map((r) => r.sha256), [a]);
  assert.ok('removed' in (ds.remove(a, 5) ?? {}));
  assert.deepEqual(ds.removedAmong([a, b]), [a]);
  assert.equal(ds.resolveName('one'), undefined);
});

test('service store on PostgreSQL: a second service of a name refused, replica lookups by rowid', (t) => {
  const url = schemaUrl(t);
  if (!url) return;
  const store = MasterStore.open({ kind: 'postgres', url });
  const ss = ServiceStore.open({ kind: 'postgres', url });
  t.after(() => {
    ss.close();
    store.close();
  });
  const spec = TaskSpec.fromPartial({ image: 'hivemind/svc-test:1', service: { service: 'web', replica: 0, port: 8080 } });
  const row = { name: 'web', spec, replicas: 1, public: false, graceMs: 1000, createdAt: 1, removing: false };
  assert.equal(ss.insertService(row), true);
  assert.equal(ss.insertService(row), false);
  assert.equal(ss.getService('web')?.public, false);
  const task = (id: string, state: TaskState, at: number): TaskRow => ({
    id, spec, state, attempt: 1, maxAttempts: 3, nodeId: null, queueReason: '', outcome: undefined, inputSize: 0, inputSha256: '', result: undefined,
    cancelRequested: false, cancelReason: '', createdAt: at, updatedAt: at, startedAt: null, finishedAt: null, lastUpdateSeq: 0, excludedNodes: [],
  });
  store.insertTask(task('old', TaskState.TASK_STATE_FAILED, 1), { state: TaskState.TASK_STATE_QUEUED, at: 1, nodeId: null, attempt: 1, message: '' });
  store.insertTask(task('new', TaskState.TASK_STATE_FAILED, 2), { state: TaskState.TASK_STATE_QUEUED, at: 2, nodeId: null, attempt: 1, message: '' });
  assert.deepEqual(ss.replicaTasks('web').map((r) => r.id), ['new'], 'the latest task of replica 0 only');
  assert.equal(store.getTask('new')?.cancelRequested, false);
});
