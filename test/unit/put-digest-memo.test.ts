// The memo of what `data put` hashed: a changed file or tree misses, an unchanged one hits, the
// memo is bounded and a damaged memo file is ignored.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fingerprintPath, MAX_MEMO_ENTRIES, PutDigestMemo, type MemoEntry } from '../../src/client/put-digest-memo.js';

const entry = (fingerprint: string, usedAt = 1): MemoEntry => ({ fingerprint, sha256: 'a'.repeat(64), size: 10, kind: 'file', usedAt });

test('a fingerprint changes with any file of a tree: bytes, size, time, mode, a new or removed entry', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-memo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'sub'));
  await writeFile(join(dir, 'sub', 'w.bin'), 'weights');
  await writeFile(join(dir, 'cfg.json'), '{}');
  const fp0 = await fingerprintPath(dir);
  assert.equal(await fingerprintPath(dir), fp0, 'stable when nothing changes');
  const fileFp = await fingerprintPath(join(dir, 'cfg.json'));
  await writeFile(join(dir, 'sub', 'w.bin'), 'weightz'); // same size, new mtime
  const fp1 = await fingerprintPath(dir);
  assert.notEqual(fp1, fp0);
  await utimes(join(dir, 'sub', 'w.bin'), new Date(1_000_000), new Date(1_000_000));
  assert.notEqual(await fingerprintPath(dir), fp1, 'a time put back differs from the write time');
  const fp2 = await fingerprintPath(dir);
  await writeFile(join(dir, 'new'), '');
  assert.notEqual(await fingerprintPath(dir), fp2, 'a new entry');
  await rm(join(dir, 'new'));
  assert.notEqual(await fingerprintPath(dir), fp2, 'removed again: the directory changed (its time), so it is hashed again');
  assert.equal(await fingerprintPath(join(dir, 'cfg.json')), fileFp, 'a single file has its own fingerprint');
  await assert.rejects(fingerprintPath(join(dir, 'missing')), /ENOENT/);
});

test('the memo: hits only with the same fingerprint, survives reloading, keeps the most recent entries, ignores a damaged file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-memo-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'home', 'put-digests.json');
  const memo = await PutDigestMemo.load(file);
  assert.equal(memo.lookup('/m', 'fp'), undefined);
  await memo.remember('/m', entry('fp'));
  assert.deepEqual(memo.lookup('/m', 'fp'), entry('fp'));
  assert.equal(memo.lookup('/m', 'other'), undefined, 'a changed fingerprint misses');
  assert.deepEqual((await PutDigestMemo.load(file)).lookup('/m', 'fp'), entry('fp'), 'written to disk');

  for (let i = 0; i < MAX_MEMO_ENTRIES + 10; i++) await memo.remember(`/p${i}`, entry(`f${i}`, 100 + i));
  const kept = JSON.parse(await readFile(file, 'utf8')) as Record<string, unknown>;
  assert.equal(Object.keys(kept).length, MAX_MEMO_ENTRIES);
  assert.ok(!('/m' in kept) && !('/p0' in kept) && `/p${MAX_MEMO_ENTRIES + 9}` in kept, 'the least recently used went');

  await writeFile(file, '{"/x": {"fingerprint": "f", "sha256": "../../etc"}, "/y": 5');
  assert.equal((await PutDigestMemo.load(file)).lookup('/x', 'f'), undefined, 'damaged: starts empty');
  await writeFile(file, JSON.stringify({ '/x': { ...entry('f'), sha256: 'not-hex' }, '/y': entry('g') }));
  const partly = await PutDigestMemo.load(file);
  assert.equal(partly.lookup('/x', 'f'), undefined, 'a malformed entry is dropped');
  assert.deepEqual(partly.lookup('/y', 'g'), entry('g'));
});
