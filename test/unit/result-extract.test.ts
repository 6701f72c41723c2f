// `hivemind result --extract`: capped by the task's output limit, all or nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { extractCapsFor, extractResult, ResultOverCapError } from '../../src/cli/result-extract.js';
import { recordHostile } from '../helpers/fault-ledger.js';

/** A tar.gz of the given entries (files only; a name ending in / is a directory). */
export async function tarGz(entries: { name: string; data?: Buffer }[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const parts: Buffer[] = [];
  pack.on('data', (d: unknown) => parts.push(d as Buffer));
  const ended = new Promise<void>((r) => pack.on('end', () => r()));
  for (const e of entries) {
    if (e.name.endsWith('/')) pack.entry({ name: e.name, type: 'directory' });
    else pack.entry({ name: e.name }, e.data ?? Buffer.alloc(0));
  }
  pack.finalize();
  await ended;
  return gzipSync(Buffer.concat(parts), { level: 9 });
}

async function scratch(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-extract-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('extract caps: the task\'s max output, else the worker default, --max-extract replaces it; entries capped', () => {
  assert.deepEqual(extractCapsFor({ maxOutputBytes: 1024 ** 2 }, undefined), { maxBytes: 1024 ** 2, maxEntries: 100_000, source: "the task's max output" });
  assert.equal(extractCapsFor({ maxOutputBytes: 0 }, undefined).maxBytes, 1024 ** 3);
  assert.equal(extractCapsFor(undefined, undefined).maxBytes, 1024 ** 3);
  assert.deepEqual(extractCapsFor({ maxOutputBytes: 1024 ** 2 }, 5 * 1024 ** 2), { maxBytes: 5 * 1024 ** 2, maxEntries: 100_000, source: '--max-extract' });
});

test('a result over its cap is refused with the cap and the flag named, and leaves nothing behind', async (t) => {
  const dir = await scratch(t);
  const bomb = join(dir, 'bomb.tar.gz');
  await writeFile(bomb, await tarGz([{ name: 'a/' }, { name: 'a/small.txt', data: Buffer.from('hi') }, { name: 'a/zeros', data: Buffer.alloc(16 * 1024 ** 2) }]));
  const caps = extractCapsFor({ maxOutputBytes: 1024 ** 2 }, undefined);
  // A fresh destination under a fresh parent: neither may be left.
  const fresh = join(dir, 'new-parent', 'out');
  const err = await extractResult('t1', bomb, fresh, caps).catch((e: unknown) => e);
  // An existing destination keeps exactly what it had.
  const existing = join(dir, 'existing');
  await mkdir(join(existing, 'a'), { recursive: true });
  await writeFile(join(existing, 'a', 'small.txt'), 'mine');
  const err2 = await extractResult('t1', bomb, existing, caps).catch((e: unknown) => e);
  const left = await readdir(dir);
  const kept = await readFile(join(existing, 'a', 'small.txt'), 'utf8');
  recordHostile('CLI: result --extract of a gzip bomb over the task\'s max output (unit)', !(err instanceof ResultOverCapError) || left.length !== 2 || kept !== 'mine', 2);
  assert.ok(err instanceof ResultOverCapError, String(err));
  assert.match(err.message, /task t1: the result unpacks to more than 1\.0 MiB \(the task's max output\), stopped at "a\/zeros"; nothing was extracted into .*--max-extract/);
  assert.ok(err2 instanceof ResultOverCapError, String(err2));
  assert.deepEqual(left.sort(), ['bomb.tar.gz', 'existing'], 'no staging directory, no created parent');
  assert.equal(kept, 'mine');
  assert.deepEqual(await readdir(existing), ['a']);

  // Raised with --max-extract, it unpacks, merging into the existing directory.
  await extractResult('t1', bomb, existing, extractCapsFor({ maxOutputBytes: 1024 ** 2 }, 32 * 1024 ** 2));
  assert.equal(await readFile(join(existing, 'a', 'small.txt'), 'utf8'), 'hi');
  assert.equal((await readFile(join(existing, 'a', 'zeros'))).length, 16 * 1024 ** 2);
  assert.deepEqual((await readdir(dir)).sort(), ['bomb.tar.gz', 'existing']);
});

test('too many entries, or a file that would replace a directory, leave the destination as it was', async (t) => {
  const dir = await scratch(t);
  const many = join(dir, 'many.tar.gz');
  await writeFile(many, await tarGz(Array.from({ length: 51 }, (_, i) => ({ name: `f${i}` }))));
  // The real cap (100 000) takes 100 000 file creations to reach: a small one shows the same path.
  const err = await extractResult('t2', many, join(dir, 'out'), { ...extractCapsFor({ maxOutputBytes: 0 }, undefined), maxEntries: 50 }).catch((e: unknown) => e);
  assert.ok(err instanceof ResultOverCapError, String(err));
  assert.match(err.message, /more than 50 entries/);
  assert.deepEqual(await readdir(dir), ['many.tar.gz']);

  const clash = join(dir, 'clash.tar.gz');
  await writeFile(clash, await tarGz([{ name: 'new.txt', data: Buffer.from('n') }, { name: 'keep', data: Buffer.from('file') }]));
  const dest = join(dir, 'dest');
  await mkdir(join(dest, 'keep'), { recursive: true });
  await writeFile(join(dest, 'keep', 'x'), 'x');
  await assert.rejects(extractResult('t2', clash, dest, extractCapsFor(undefined, undefined)), /would replace the directory/);
  assert.deepEqual(await readdir(dest), ['keep']);
  assert.deepEqual((await readdir(dir)).sort(), ['clash.tar.gz', 'dest', 'many.tar.gz']);
});
