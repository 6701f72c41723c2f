// When the main thread copies the WAL's last frames itself (sql/wal-restart.ts): only for a big
// WAL, only when little is left to copy, and whatever is left once the WAL is very big.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { catchUpDue } from '../../src/master/sql/wal-restart.js';

const o = { restartBytes: 64 * 2 ** 20, catchUpFrames: 1024, forceBytes: 512 * 2 ** 20 };
const pageSize = 4096;
const frames = (mib: number) => (mib * 2 ** 20) / pageSize;

test('a WAL under restartBytes is left to SQLite, however much is left to copy', () => {
  assert.equal(catchUpDue({ logFrames: frames(63), copiedFrames: frames(63), pageSize }, o), 'none');
  assert.equal(catchUpDue({ logFrames: frames(10), copiedFrames: 0, pageSize }, o), 'none');
});

test('a big WAL with at most catchUpFrames left is caught up; with more left it waits for the thread', () => {
  assert.equal(catchUpDue({ logFrames: frames(64), copiedFrames: frames(64) - 1024, pageSize }, o), 'catch-up');
  assert.equal(catchUpDue({ logFrames: frames(64), copiedFrames: frames(64), pageSize }, o), 'catch-up');
  assert.equal(catchUpDue({ logFrames: frames(100), copiedFrames: frames(100) - 1025, pageSize }, o), 'none');
});

test('a WAL past forceBytes is caught up whatever is left (a writer faster than the thread)', () => {
  assert.equal(catchUpDue({ logFrames: frames(512), copiedFrames: 0, pageSize }, o), 'forced');
  assert.equal(catchUpDue({ logFrames: frames(600), copiedFrames: frames(600) - 10, pageSize }, o), 'catch-up');
});
