// The master's blob store in a temp dir: resumable verified results, logs capped from the head.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore } from '../../src/master/blob-store.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function setup(t: { after: (fn: () => unknown) => void }, logMaxBytes?: number) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-blobs-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return BlobStore.create(dir, { logMaxBytes });
}

test('a result uploaded in two sessions is verified and renamed into place', async (t) => {
  const blobs = await setup(t);
  const data = randomBytes(100_000);
  const s1 = await blobs.openResultUpload('t1', 0);
  await s1.write(data.subarray(0, 40_000));
  await s1.close();
  assert.equal(await blobs.resultOffset('t1'), 40_000);
  await assert.rejects(blobs.openResultUpload('t1', 0), /must resume at offset 40000/);
  const s2 = await blobs.openResultUpload('t1', 40_000);
  await s2.write(data.subarray(40_000));
  await s2.close();
  await blobs.completeResult('t1', { size: data.length, sha256: sha(data) });
  assert.equal(await blobs.hasResult('t1'), true);
  assert.equal(await blobs.resultOffset('t1'), 0);
  assert.equal(sha(await readFile(blobs.resultPath('t1'))), sha(data));
});

test('a sha256 mismatch deletes the partial', async (t) => {
  const blobs = await setup(t);
  const s = await blobs.openResultUpload('t1', 0);
  await s.write(Buffer.from('abc'));
  await s.close();
  await assert.rejects(blobs.completeResult('t1', { size: 3, sha256: sha(Buffer.from('abd')) }), /sha256 mismatch.*upload again from 0/);
  assert.equal(await blobs.resultOffset('t1'), 0);
  assert.equal(await blobs.hasResult('t1'), false);
});

test('ids that could escape the data dir are refused', async (t) => {
  const blobs = await setup(t);
  assert.throws(() => blobs.resultPath('../etc'), /not a valid task id/);
});

test('logs keep their end when over the cap', async (t) => {
  const blobs = await setup(t, 1000);
  for (let i = 0; i < 30; i++) await blobs.appendLog('t1', Buffer.from(`line ${String(i).padStart(3, '0')} ${'x'.repeat(40)}\n`));
  const log = await readFile(blobs.logPath('t1'), 'utf8');
  assert.ok(log.length <= 1000 + 100, `log is ${log.length} bytes`);
  assert.match(log, /^\[hivemind: earlier output trimmed/);
  assert.ok(log.endsWith(`line 029 ${'x'.repeat(40)}\n`));
  assert.ok(!log.includes('line 000'));
});

test('a log snapshot is consistent with appends serialized behind it', async (t) => {
  const blobs = await setup(t);
  await blobs.appendLog('t1', Buffer.from('a'));
  const appended = blobs.appendLog('t1', Buffer.from('b'));
  const snap = await blobs.withLogLock('t1', () => blobs.snapshotLog('t1', 1024));
  await appended;
  const parts: Buffer[] = [];
  for await (const c of snap.stream!) parts.push(c as Buffer);
  assert.equal(Buffer.concat(parts).toString(), 'ab');
  assert.equal(snap.size, 2);
});
