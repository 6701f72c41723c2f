// Data sets, the pure parts: the canonical tar of a directory is the same bytes for the same tree
// (whatever the mtimes, owners, permission bits other than x, or creation order), names and
// digests are validated, and an interrupted upload resumes only where it safely can.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, symlink, utimes, writeFile } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { existsSync, createReadStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tarStream from 'tar-stream';
import { canonicalMode, canonicalOrder, packCanonical } from '../../src/archive/canonical-tar.js';
import { UnsafeArchiveError } from '../../src/common/errors.js';
import { DATA_LIMITS, InvalidDataError, parseDataRef, parseDigest, resumeOffset, validateDataName } from '../../src/protocol/data-rules.js';
import { recordHostile } from '../helpers/fault-ledger.js';

async function tmp(t: TestContext): Promise<string> {
  const d = await mkdtemp(join(tmpdir(), 'hm-data-unit-'));
  t.after(() => rm(d, { recursive: true, force: true }));
  return d;
}

/** The same tree, written in the given order with the given permission bits and times. */
async function writeTree(root: string, o: { reverse: boolean; loose: boolean; mtime: number }): Promise<void> {
  const files: [string, string, boolean][] = [
    ['a.txt', 'alpha\n', false],
    ['models/weights.bin', 'x'.repeat(5000), false],
    ['models/run.sh', '#!/bin/sh\necho hi\n', true],
    ['models/nested/deep/z', 'z', false],
    ['B-upper', 'upper case sorts before lower', false],
    ['empty-dir/', '', false],
  ];
  for (const [rel, body, exec] of o.reverse ? [...files].reverse() : files) {
    const full = join(root, rel);
    if (rel.endsWith('/')) {
      await mkdir(full, { recursive: true });
      continue;
    }
    await mkdir(join(full, '..'), { recursive: true });
    await writeFile(full, body);
    // Only the executable bit may matter: 0600/0700 here, 0664/0775 there.
    await chmod(full, exec ? (o.loose ? 0o775 : 0o700) : o.loose ? 0o664 : 0o600);
    await utimes(full, o.mtime, o.mtime);
  }
  await chmod(join(root, 'models'), o.loose ? 0o777 : 0o700);
}

async function headersOf(file: string): Promise<tarStream.Header[]> {
  const extract = tarStream.extract();
  createReadStream(file).pipe(extract as unknown as NodeJS.WritableStream);
  const out: tarStream.Header[] = [];
  for await (const e of extract) {
    out.push(e.header);
    for await (const _ of e) void _;
  }
  return out;
}

test('the canonical tar of a directory is the same bytes for the same tree, whatever mtimes, permission bits and creation order', async (t) => {
  const d = await tmp(t);
  await writeTree(join(d, 'one'), { reverse: false, loose: false, mtime: 1_000_000 });
  await writeTree(join(d, 'two'), { reverse: true, loose: true, mtime: 1_700_000_000 });
  const one = await packCanonical(join(d, 'one'), join(d, 'one.tar'));
  const two = await packCanonical(join(d, 'two'), join(d, 'two.tar'));
  assert.equal(one.sha256, two.sha256);
  assert.equal(one.size, two.size);
  assert.deepEqual(await readFile(join(d, 'one.tar')), await readFile(join(d, 'two.tar')));
  assert.equal(one.entries, 9);

  const headers = await headersOf(join(d, 'one.tar'));
  assert.deepEqual(headers.map((h) => h.name), ['B-upper', 'a.txt', 'empty-dir/', 'models/', 'models/nested/', 'models/nested/deep/', 'models/nested/deep/z', 'models/run.sh', 'models/weights.bin']);
  for (const h of headers) {
    assert.equal(h.mtime?.getTime(), 0, h.name);
    assert.equal(h.uid, 0);
    assert.equal(h.gid, 0);
    assert.equal(h.uname ?? '', '');
    assert.equal(h.gname ?? '', '');
  }
  assert.equal(headers.find((h) => h.name === 'models/run.sh')?.mode, 0o755);
  assert.equal(headers.find((h) => h.name === 'a.txt')?.mode, 0o644);
  assert.equal(headers.find((h) => h.name === 'models/')?.mode, 0o755);
});

test('the canonical tar changes with a byte of content, a name, or the executable bit', async (t) => {
  const d = await tmp(t);
  await writeTree(join(d, 'base'), { reverse: false, loose: false, mtime: 1_000_000 });
  const base = (await packCanonical(join(d, 'base'), join(d, 'base.tar'))).sha256;

  await writeTree(join(d, 'content'), { reverse: false, loose: false, mtime: 1_000_000 });
  await writeFile(join(d, 'content', 'a.txt'), 'alphA\n');
  await writeTree(join(d, 'exec'), { reverse: false, loose: false, mtime: 1_000_000 });
  await chmod(join(d, 'exec', 'a.txt'), 0o700);
  await writeTree(join(d, 'renamed'), { reverse: false, loose: false, mtime: 1_000_000 });
  await writeFile(join(d, 'renamed', 'a2.txt'), 'alpha\n');
  await rm(join(d, 'renamed', 'a.txt'));

  for (const name of ['content', 'exec', 'renamed']) {
    assert.notEqual((await packCanonical(join(d, name), join(d, `${name}.tar`))).sha256, base, name);
  }
});

test('a directory with a symlink or a fifo is refused naming the path, and no archive is left behind', async (t) => {
  const d = await tmp(t);
  await writeTree(join(d, 'tree'), { reverse: false, loose: false, mtime: 1_000_000 });
  await symlink('a.txt', join(d, 'tree', 'models', 'link-to-a'));
  const out = join(d, 'tree.tar');
  await assert.rejects(packCanonical(join(d, 'tree'), out), (err: unknown) => {
    recordHostile('data put: a directory holding a symlink', !(err instanceof UnsafeArchiveError));
    assert.ok(err instanceof UnsafeArchiveError);
    assert.match(err.message, /"models\/link-to-a" is a symlink/);
    return true;
  });
  assert.equal(existsSync(out), false);
  await rm(join(d, 'tree', 'models', 'link-to-a'));
  execFileSync('mkfifo', [join(d, 'tree', 'models', 'pipe')]);
  await assert.rejects(packCanonical(join(d, 'tree'), out), (err: unknown) => {
    recordHostile('data put: a directory holding a fifo', !(err instanceof UnsafeArchiveError));
    assert.match((err as Error).message, /"models\/pipe" is a special file/);
    return true;
  });
  assert.equal(existsSync(out), false);
  await assert.rejects(packCanonical(join(d, 'tree', 'a.txt'), out), /not a directory/);
});

test('canonical modes: the executable bit alone decides; names sort by code unit, not locale', () => {
  assert.equal(canonicalMode('file', 0o100600), 0o644);
  assert.equal(canonicalMode('file', 0o100744), 0o755);
  assert.equal(canonicalMode('file', 0o100601), 0o755);
  assert.equal(canonicalMode('directory', 0o40700), 0o755);
  assert.deepEqual(canonicalOrder(['b', 'a', 'B', '_', 'ä', '1']), ['1', 'B', '_', 'a', 'b', 'ä']);
});

test('digests are "sha256:" and 64 lowercase hex digits; anything else is refused naming the field', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(parseDigest(`sha256:${hex}`, 'sha256'), hex);
  const bad = [hex, `sha256:${hex.toUpperCase()}`, `sha256:${hex.slice(1)}`, `sha256:${hex}0`, `md5:${hex}`, `sha256:${'g'.repeat(64)}`, '', `sha256:${hex}\n`, `SHA256:${hex}`];
  let escaped = 0;
  for (const b of bad) {
    try {
      parseDigest(b, 'sha256');
      escaped++;
    } catch (err) {
      if (!(err instanceof InvalidDataError) || !/sha256 ".*" is not a digest/s.test(err.message)) escaped++;
    }
  }
  recordHostile('data: malformed digests', escaped, bad.length);
  assert.equal(escaped, 0);
});

test('names: 1 to 128 of [A-Za-z0-9._-] starting with a letter or digit; refs are names or digests', () => {
  for (const ok of ['llama-3-8b', 'a', 'Model_v2.1', '9', 'x'.repeat(DATA_LIMITS.maxNameChars)]) assert.equal(validateDataName(ok), ok);
  const bad = ['', ' ', 'has space', 'x'.repeat(DATA_LIMITS.maxNameChars + 1), '../etc', '.hidden', '-dash', 'a/b', 'a:b', 'sha256', 'tab\tname', 'bell\u0007', 'nul\u0000', 'émoji🙂', 'line\nbreak'];
  bad.splice(bad.indexOf('sha256'), 1); // a plain word is a fine name; "sha256:" refs are digests
  let escaped = 0;
  for (const b of bad) {
    try {
      validateDataName(b, '--name');
      escaped++;
    } catch (err) {
      if (!(err instanceof InvalidDataError) || !err.message.startsWith('--name "')) escaped++;
    }
  }
  recordHostile('data: malformed names', escaped, bad.length);
  assert.equal(escaped, 0);
  assert.deepEqual(parseDataRef('llama'), { name: 'llama' });
  assert.deepEqual(parseDataRef(`sha256:${'0'.repeat(64)}`), { digest: '0'.repeat(64) });
  assert.throws(() => parseDataRef('sha256:nothex'), InvalidDataError);
  // the echo of a hostile value is cut and escaped
  assert.throws(() => validateDataName('\u001b[31m' + 'x'.repeat(100_000)), (err: Error) => err.message.length < 400 && !err.message.includes('\u001b'));
});

test('an upload resumes at the held bytes only for the same declared size; otherwise the partial is discarded', () => {
  assert.deepEqual(resumeOffset(undefined, 100), { offset: 0, discard: false });
  assert.deepEqual(resumeOffset({ bytes: 40, declaredSize: 100 }, 100), { offset: 40, discard: false });
  assert.deepEqual(resumeOffset({ bytes: 100, declaredSize: 100 }, 100), { offset: 100, discard: false });
  assert.deepEqual(resumeOffset({ bytes: 0, declaredSize: 100 }, 100), { offset: 0, discard: false });
  // a put of the same digest with another size: one of them lied; start over
  assert.deepEqual(resumeOffset({ bytes: 40, declaredSize: 100 }, 200), { offset: 0, discard: true });
  // a partial longer than declared, or of unknown size (no record): start over
  assert.deepEqual(resumeOffset({ bytes: 140, declaredSize: 100 }, 100), { offset: 0, discard: true });
  assert.deepEqual(resumeOffset({ bytes: 10, declaredSize: -1 }, 100), { offset: 0, discard: true });
});
