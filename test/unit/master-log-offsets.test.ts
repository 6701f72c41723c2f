// The master's side of a node's log resend: per-stream offsets of an attempt kept next to its log
// (shared by two masters on one data dir), what it already holds dropped, gaps noted, and the
// append whose record a killed master never wrote cut off again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { appendFile, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BlobStore } from '../../src/master/blob-store.js';
import { placeChunk, readHeld } from '../../src/master/log-offsets.js';

async function dataDir(t: { after: (fn: () => unknown) => void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-logoff-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const log = (dir: string, id: string) => readFile(join(dir, 'logs', `${id}.log`), 'utf8');

test('placeChunk: below what is held is dropped, across it trimmed, beyond it a gap', () => {
  assert.deepEqual(placeChunk(10, 10, 5), { skip: 0, gap: 0 });
  assert.deepEqual(placeChunk(10, 0, 5), { skip: 5, gap: 0 });
  assert.deepEqual(placeChunk(10, 8, 5), { skip: 2, gap: 0 });
  assert.deepEqual(placeChunk(10, 15, 5), { skip: 0, gap: 5 });
});

test('a resend after a failover appends each byte once, on either master of one data dir', async (t) => {
  const dir = await dataDir(t);
  const a = await BlobStore.create(dir);
  const b = await BlobStore.create(dir);
  const at = (stream: 'stdout' | 'stderr', offset: number) => ({ attempt: 1, stream, offset });
  await a.appendLogAt('t1', at('stdout', 0), Buffer.from('out 1\n'));
  await a.appendLogAt('t1', at('stderr', 0), Buffer.from('err 1\n'));
  assert.deepEqual(await b.logHeld('t1', 1), { stdout: 6, stderr: 6 });
  // The node resends all it kept to B: out 1 again, and out 2 that A never stored.
  assert.deepEqual(await b.appendLogAt('t1', at('stdout', 0), Buffer.from('out 1\n')), { appended: undefined, gap: 0 });
  const emitted: string[] = [];
  await b.appendLogAt('t1', at('stdout', 3), Buffer.from(' 1\nout 2\n'), (d) => emitted.push(d.toString()));
  assert.deepEqual(emitted, ['out 2\n'], 'live followers get only what was appended');
  assert.equal(await log(dir, 't1'), 'out 1\nerr 1\nout 2\n');
  // And back on A (its cached record is stale: it reads B's).
  await a.appendLogAt('t1', at('stdout', 6), Buffer.from('out 2\n'));
  await a.appendLogAt('t1', at('stdout', 12), Buffer.from('out 3\n'));
  assert.equal(await log(dir, 't1'), 'out 1\nerr 1\nout 2\nout 3\n');
  assert.deepEqual(await a.logHeld('t1', 1), { stdout: 18, stderr: 6 });
});

test('a chunk beyond a gap is appended after a note saying how many bytes of which stream are missing', async (t) => {
  const dir = await dataDir(t);
  const blobs = await BlobStore.create(dir);
  await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 0 }, Buffer.from('a\n'));
  const r = await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 100 }, Buffer.from('z\n'));
  assert.equal(r.gap, 98);
  assert.match(await log(dir, 't1'), /^a\n\n\[hivemind: 98 bytes of stdout missing here: .*\]\nz\n$/);
  assert.deepEqual(await blobs.logHeld('t1', 1), { stdout: 102, stderr: 0 });
});

test('a new attempt starts its offsets at 0; a superseded attempt is not told the new one\'s', async (t) => {
  const dir = await dataDir(t);
  const blobs = await BlobStore.create(dir);
  await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 0 }, Buffer.from('first try\n'));
  await blobs.appendLogAt('t1', { attempt: 2, stream: 'stdout', offset: 0 }, Buffer.from('second\n'));
  assert.equal(await log(dir, 't1'), 'first try\nsecond\n');
  assert.deepEqual(await blobs.logHeld('t1', 2), { stdout: 7, stderr: 0 });
  assert.deepEqual(await blobs.logHeld('t1', 1), { stdout: 0, stderr: 0 });
});

test('an append whose record a killed master never wrote is cut off, so the resend does not repeat it', async (t) => {
  const dir = await dataDir(t);
  const a = await BlobStore.create(dir);
  await a.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 0 }, Buffer.from('line 1\n'));
  // A wrote "line 2" into the log and died before its record.
  await appendFile(join(dir, 'logs', 't1.log'), 'line 2\n');
  const b = await BlobStore.create(dir);
  assert.deepEqual(await b.logHeld('t1', 1), { stdout: 7, stderr: 0 });
  await b.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 7 }, Buffer.from('line 2\n'));
  assert.equal(await log(dir, 't1'), 'line 1\nline 2\n');
});

test('offset-less appends (older nodes, notes) keep the record in step: they are not cut off', async (t) => {
  const dir = await dataDir(t);
  const blobs = await BlobStore.create(dir);
  await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 0 }, Buffer.from('a\n'));
  await blobs.appendLog('t1', Buffer.from('[a note]\n'));
  await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 2 }, Buffer.from('b\n'));
  assert.equal(await log(dir, 't1'), 'a\n[a note]\nb\n');
});

test('the cap still trims the head; the offsets go on counting the streams', async (t) => {
  const dir = await dataDir(t);
  const blobs = await BlobStore.create(dir, { logMaxBytes: 1000 });
  for (let i = 0; i < 50; i++) await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: i * 100 }, Buffer.from(`${String(i).padStart(3, '0')}${'.'.repeat(96)}\n`));
  const text = await log(dir, 't1');
  assert.ok(text.length <= 1000, `${text.length}`);
  assert.match(text, /049\.+\n$/);
  assert.deepEqual(await blobs.logHeld('t1', 1), { stdout: 5000, stderr: 0 });
  // A resend of the last line after the trim is still recognised.
  await blobs.appendLogAt('t1', { attempt: 1, stream: 'stdout', offset: 4900 }, Buffer.from(`049${'.'.repeat(96)}\n`));
  assert.equal(await log(dir, 't1'), text);
});

test('an unreadable record counts as none (resends appended, not lost)', async (t) => {
  const dir = await dataDir(t);
  const blobs = await BlobStore.create(dir);
  await writeFile(join(dir, 'logs', 't1.held'), 'garbage');
  assert.equal(await readHeld(join(dir, 'logs', 't1.held')), undefined);
  assert.deepEqual(await blobs.logHeld('t1', 1), { stdout: 0, stderr: 0 });
});
