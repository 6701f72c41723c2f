import { test } from 'node:test';
import assert from 'node:assert/strict';
import { migrate, type MigratableDb, type Schema } from '../../src/common/sqlite-migrate.js';
import { MASTER_SCHEMA } from '../../src/master/migrations.js';
import { WORKER_SCHEMA } from '../../src/worker/store/migrations.js';

/** A database that records what ran; a transaction keeps its writes only when it completes. */
class FakeDb implements MigratableDb {
  ran: string[] = [];
  transactions = 0;
  constructor(public version: number, private readonly failOn?: string) {}
  pragma(source: string): unknown {
    if (source === 'user_version') return this.version;
    const m = /^user_version = (\d+)$/.exec(source);
    if (!m) throw new Error(`unexpected pragma ${source}`);
    this.version = Number(m[1]);
    return undefined;
  }
  exec(source: string): unknown {
    if (source === this.failOn) throw new Error(`${source} failed`);
    this.ran.push(source);
    return undefined;
  }
  transaction(fn: () => void): () => void {
    return () => {
      this.transactions++;
      const saved = { ran: [...this.ran], version: this.version };
      try {
        fn();
      } catch (err) {
        this.ran = saved.ran;
        this.version = saved.version;
        throw err;
      }
    };
  }
}

const schema: Schema = { migrations: ['m1', 'm2', 'm3'], tooNew: (found, latest) => new Error(`v${found} > v${latest}`) };

test('migrate runs the pending migrations in order, in one transaction, and records the version in user_version', () => {
  const db = new FakeDb(1);
  assert.deepEqual(migrate(db, schema), { from: 1, to: 3 });
  assert.deepEqual(db.ran, ['m2', 'm3']);
  assert.equal(db.version, 3);
  assert.equal(db.transactions, 1);
});

test('migrate on an up-to-date database runs nothing', () => {
  const db = new FakeDb(3);
  assert.deepEqual(migrate(db, schema), { from: 3, to: 3 });
  assert.deepEqual(db.ran, []);
  assert.equal(db.transactions, 0);
});

test('a failing migration leaves the database at the version it had', () => {
  const db = new FakeDb(0, 'm2');
  assert.throws(() => migrate(db, schema), /m2 failed/);
  assert.deepEqual(db.ran, []);
  assert.equal(db.version, 0);
});

test('a database from a newer build is refused with the schema\'s own message, untouched', () => {
  const db = new FakeDb(7);
  assert.throws(() => migrate(db, schema), /^Error: v7 > v3$/);
  assert.equal(db.version, 7);
  assert.equal(db.transactions, 0);
});

test('the master and the worker keep their own messages for a newer database', () => {
  const m = MASTER_SCHEMA.migrations.length;
  const w = WORKER_SCHEMA.migrations.length;
  assert.throws(() => migrate(new FakeDb(m + 1), MASTER_SCHEMA), new RegExp(`master database schema version ${m + 1} is newer than this master \\(${m}\\); upgrade the master`));
  assert.throws(() => migrate(new FakeDb(w + 1), WORKER_SCHEMA), new RegExp(`worker database schema version ${w + 1} is newer than this worker understands \\(${w}\\); upgrade the worker`));
});
