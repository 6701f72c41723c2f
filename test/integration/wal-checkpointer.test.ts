// The WAL checkpointer (sql/wal-checkpointer.ts) against real SQLite files: with external
// checkpoints a commit never checkpoints (the WAL grows past SQLite's 1,000-page threshold), the
// thread copies the WAL back without breaking a transaction in progress, and its close leaves no
// WAL behind.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../../src/common/logger.js';
import { openMasterSql } from '../../src/master/sql/open-master-sql.js';
import type { SqlDriver } from '../../src/master/sql/sql-driver.js';
import { CheckpointerStartError, WalCheckpointer } from '../../src/master/sql/wal-checkpointer.js';

const MiB = 1024 * 1024;

function scratch(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'hm-wal-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return join(dir, 'master.db');
}

function walBytes(path: string): number {
  return existsSync(`${path}-wal`) ? statSync(`${path}-wal`).size : 0;
}

/** `mib` MiB in 64 KiB rows, one transaction per row. */
function write(db: SqlDriver, mib: number): void {
  const ins = db.prepare('INSERT INTO scratch (b) VALUES (?)');
  for (let i = 0; i < mib * 16; i++) db.transaction(() => ins.run(Buffer.alloc(64 * 1024, i)));
}

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

test('without external checkpoints a commit checkpoints (the WAL stays near 1,000 pages); with them it never does', (t) => {
  for (const external of [false, true]) {
    const path = scratch(t);
    const db = openMasterSql({ kind: 'sqlite', path, externalCheckpoints: external });
    db.exec('CREATE TABLE scratch (b BLOB)');
    write(db, 16);
    const size = walBytes(path);
    db.close();
    if (external) assert.ok(size > 15 * MiB, `WAL ${size} bytes: a commit checkpointed`);
    else assert.ok(size < 6 * MiB, `WAL ${size} bytes: SQLite's automatic checkpoint did not run`);
  }
});

test('the checkpointer copies the WAL back from its thread and leaves none after close', async (t) => {
  const path = scratch(t);
  const seen: number[] = [];
  const cp = await WalCheckpointer.start(path, silentLogger(), { everyMs: 200, onCheckpoint: (_s, frames) => seen.push(frames) });
  const db = openMasterSql({ kind: 'sqlite', path, externalCheckpoints: true });
  db.exec('CREATE TABLE scratch (b BLOB)');
  // 8 MiB of 4 KiB pages: copied back by the thread (some while this one still writes).
  write(db, 8);
  await until('checkpoints of the written frames', () => seen.reduce((a, b) => a + b, 0) >= 2048);
  write(db, 1);
  db.close();
  await cp.close();
  await cp.close();
  assert.equal(existsSync(`${path}-wal`), false, 'the last connection closed: no WAL left');
  const again = openMasterSql(path);
  assert.equal((again.prepare('SELECT COUNT(*) AS n FROM scratch').get() as { n: number }).n, 9 * 16);
  again.close();
});

test('a transaction that reads, lets checkpoints run, then writes still commits (the thread never resets the WAL under it)', async (t) => {
  const path = scratch(t);
  const seen: number[] = [];
  const cp = await WalCheckpointer.start(path, silentLogger(), { everyMs: 50, pollMs: 10, onCheckpoint: (_s, frames) => seen.push(frames) });
  t.after(() => cp.close());
  const db = openMasterSql({ kind: 'sqlite', path, externalCheckpoints: true });
  t.after(() => db.close());
  db.exec('CREATE TABLE scratch (b BLOB)');
  write(db, 2);
  await until('the WAL copied back', () => seen.reduce((a, b) => a + b, 0) >= 512);
  // better-sqlite3's deferred BEGIN: the snapshot is taken by the read, the write lock at the
  // insert. A RESTART/TRUNCATE in between would make the insert fail with "database is locked".
  db.exec('BEGIN');
  db.prepare('SELECT COUNT(*) AS n FROM scratch').get();
  const before = seen.length;
  await sleep(300);
  db.prepare('INSERT INTO scratch (b) VALUES (?)').run(Buffer.alloc(16));
  db.exec('COMMIT');
  assert.ok(seen.length >= before, 'the thread kept running');
  assert.equal((db.prepare('SELECT COUNT(*) AS n FROM scratch').get() as { n: number }).n, 2 * 16 + 1);
});

test('under a writer that never pauses the WAL stays near restartBytes: the main thread copies the last frames so SQLite starts it over (without that it grows with every write)', async (t) => {
  const sizes: Record<string, number> = {};
  for (const restart of [false, true]) {
    const path = scratch(t);
    const catchUps: number[] = [];
    const cp = await WalCheckpointer.start(path, silentLogger(), {
      everyMs: 50,
      pollMs: 10,
      growBytes: MiB,
      restart: restart ? { restartBytes: 4 * MiB, catchUpFrames: 1024, forceBytes: 64 * MiB } : false,
      onCatchUp: (s) => catchUps.push(s),
    });
    const db = openMasterSql({ kind: 'sqlite', path, externalCheckpoints: true });
    db.exec('CREATE TABLE scratch (b BLOB)');
    const ins = db.prepare('INSERT INTO scratch (b) VALUES (?)');
    // 16 KiB (4 pages) a commit, a commit every millisecond or so for 3 s: the thread's
    // checkpoints (each with an fsync) always see new frames arrive while they copy.
    let rows = 0;
    let largest = 0;
    const end = Date.now() + 3000;
    while (Date.now() < end) {
      db.transaction(() => ins.run(Buffer.alloc(16 * 1024, rows)));
      rows++;
      largest = Math.max(largest, walBytes(path));
      await sleep(1);
    }
    sizes[String(restart)] = largest;
    t.diagnostic(`restart ${restart}: ${rows} commits (${((rows * 16) / 1024).toFixed(1)} MiB), largest WAL ${(largest / MiB).toFixed(1)} MiB, ${catchUps.length} catch-ups, longest ${(Math.max(0, ...catchUps) * 1000).toFixed(1)} ms`);
    assert.equal((db.prepare('SELECT COUNT(*) AS n FROM scratch').get() as { n: number }).n, rows, 'every commit is there');
    db.close();
    await cp.close();
    if (restart) {
      assert.ok(catchUps.length >= 1, 'the main thread caught up at least once');
      assert.ok(largest < 12 * MiB, `WAL reached ${(largest / MiB).toFixed(1)} MiB with restarts at 4 MiB`);
    } else {
      assert.equal(catchUps.length, 0);
    }
  }
  // The control: the same writer without the catch-up grows the WAL far past the bound (else this
  // test would prove nothing about the catch-up).
  assert.ok(sizes.false! > 2 * sizes.true!, `without catch-ups the WAL reached ${sizes.false} bytes, with them ${sizes.true}`);
});

test('a checkpointer that cannot open the database fails to start with a precise error', async () => {
  await assert.rejects(
    WalCheckpointer.start('/nonexistent-dir-hm/master.db', silentLogger(), { startTimeoutMs: 5000 }),
    (err: unknown) => err instanceof CheckpointerStartError && /\/nonexistent-dir-hm\/master\.db: .*(unable to open|directory does not exist)/i.test(err.message),
  );
});
