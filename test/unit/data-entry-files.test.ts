// The files of a cache entry: a directory data set unpacked from its canonical archive is exactly
// the tree its digest names, read-only for everyone; an archive that is not canonical (a url's
// author picked its bytes) is refused even though its bytes match the digest; a read-only entry
// can still be removed by the cache.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { packCanonical } from '../../src/archive/canonical-tar.js';
import { DataCorruptError } from '../../src/worker/data-cache/cache-errors.js';
import { hashEntry, makeReadOnly, makeRemovable, unpackDataSet } from '../../src/worker/data-cache/entry-files.js';
import { recordHostile } from '../helpers/fault-ledger.js';

async function tmp(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-entry-'));
  t.after(async () => {
    await makeRemovable(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
  });
  return dir;
}

test('a canonical archive unpacks to a tree that hashes back to its digest; made read-only, it still does', async (t) => {
  const dir = await tmp(t);
  const src = join(dir, 'src');
  await mkdir(join(src, 'weights'), { recursive: true });
  await writeFile(join(src, 'config.json'), '{"layers":2}');
  await writeFile(join(src, 'weights', 'w.bin'), Buffer.alloc(5000, 7));
  await writeFile(join(src, 'run.sh'), '#!/bin/sh\n');
  await chmod(join(src, 'run.sh'), 0o755);
  const tar = await packCanonical(src, join(dir, 'set.tar'));
  const dest = join(dir, 'entry');
  await unpackDataSet(join(dir, 'set.tar'), dest, tar.sha256, new AbortController().signal);
  assert.equal(await readFile(join(dest, 'weights', 'w.bin'), 'utf8'), Buffer.alloc(5000, 7).toString());
  await makeReadOnly(dest);
  assert.equal((await stat(join(dest, 'config.json'))).mode & 0o777, 0o444);
  assert.equal((await stat(join(dest, 'run.sh'))).mode & 0o777, 0o555, 'the executable bit is part of the tree');
  assert.equal((await stat(join(dest, 'weights'))).mode & 0o777, 0o555);
  assert.equal((await stat(dest)).mode & 0o777, 0o555);
  assert.equal(await hashEntry(dest, 'dir', new AbortController().signal), tar.sha256);
  await makeRemovable(dest);
  await rm(dest, { recursive: true });
});

test('a file entry hashes to the sha256 of its bytes', async (t) => {
  const dir = await tmp(t);
  await writeFile(join(dir, 'f'), 'hello');
  assert.equal(await hashEntry(join(dir, 'f'), 'file', new AbortController().signal), createHash('sha256').update('hello').digest('hex'));
});

test('hostile url data set: a non-canonical archive (its own digest, but mtimes and modes of its own) is refused', async (t) => {
  const dir = await tmp(t);
  const pack = tarStream.pack();
  pack.entry({ name: 'b.txt', mode: 0o600, mtime: new Date(1_000_000) }, 'bee');
  pack.entry({ name: 'a.txt', mode: 0o644, mtime: new Date(0) }, 'ay');
  pack.finalize();
  const file = join(dir, 'odd.tar');
  await pipeline(Readable.from(pack as AsyncIterable<Buffer>), createWriteStream(file));
  const digest = createHash('sha256').update(await readFile(file)).digest('hex');
  recordHostile('data url: a tar whose bytes match its digest but is not canonical', false);
  await assert.rejects(unpackDataSet(file, join(dir, 'entry'), digest, new AbortController().signal), (err: unknown) => {
    assert.ok(err instanceof DataCorruptError);
    assert.match(err.message, new RegExp(`data set sha256:${digest}: its archive is not a canonical one`));
    return true;
  });
});
