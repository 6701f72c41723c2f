// Where the hub's key comes from, with a fake table: the stored key wins over a file; an empty
// table imports the data dir's key file (an upgrade keeps its nodes) or stores a new key; the
// first writer wins a race; a damaged key is refused with the way out. The file source is made
// once and read back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DbHubKey, FileHubKey, hubKeyFile, type HubKeyTable } from '../../src/master/hub-key.js';
import { generateWgKeyPair } from '../../src/tunnel/wg-keys.js';

class FakeTable implements HubKeyTable {
  inserts: string[] = [];
  constructor(public stored?: string, private readonly racer?: string) {}
  read(): string | undefined {
    return this.stored;
  }
  insertIfAbsent(key: string): string {
    this.inserts.push(key);
    // Another master's insert landed between our read and our insert.
    if (this.racer && this.stored === undefined) this.stored = this.racer;
    this.stored ??= key;
    return this.stored;
  }
}

async function dataDir(t: { after(fn: () => Promise<void>): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-hubkey-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('hub key in the database: the stored key wins over the data dir file, and nothing is written', async (t) => {
  const dir = await dataDir(t);
  const stored = generateWgKeyPair().privateKey;
  await mkdir(join(dir, 'wg'));
  await writeFile(hubKeyFile(dir), generateWgKeyPair().privateKey + '\n');
  const table = new FakeTable(stored);
  assert.equal(await new DbHubKey(table, dir).privateKey(), stored);
  assert.deepEqual(table.inserts, []);
});

test('hub key in the database: an empty table imports the key file (the nodes stay enrolled), else stores a new key', async (t) => {
  const dir = await dataDir(t);
  const fileKey = generateWgKeyPair().privateKey;
  await mkdir(join(dir, 'wg'));
  await writeFile(hubKeyFile(dir), fileKey + '\n');
  const imported = new FakeTable();
  assert.equal(await new DbHubKey(imported, dir).privateKey(), fileKey);
  assert.deepEqual(imported.inserts, [fileKey]);

  const empty = await dataDir(t);
  const fresh = new FakeTable();
  const made = await new DbHubKey(fresh, empty).privateKey();
  assert.equal(fresh.stored, made);
  assert.match(made, /^[A-Za-z0-9+/]{43}=$/);
  await assert.rejects(stat(hubKeyFile(empty)), { code: 'ENOENT' }, 'with the database, no key file is made');
});

test('hub key in the database: two masters starting together both use the first writer\'s key', async (t) => {
  const dir = await dataDir(t);
  const first = generateWgKeyPair().privateKey;
  const table = new FakeTable(undefined, first);
  assert.equal(await new DbHubKey(table, dir).privateKey(), first);
  assert.equal(table.inserts.length, 1);
  assert.notEqual(table.inserts[0], first, 'ours was offered and lost');
});

test('hub key: a damaged key (database or file) is refused, saying what to do', async (t) => {
  const dir = await dataDir(t);
  await assert.rejects(new DbHubKey(new FakeTable('not a key'), dir).privateKey(), /hub_identity does not hold a WireGuard private key; delete its row .* enroll again/);
  await mkdir(join(dir, 'wg'));
  await writeFile(hubKeyFile(dir), 'garbage\n');
  await assert.rejects(new DbHubKey(new FakeTable(), dir).privateKey(), /private\.key does not hold a WireGuard private key/);
  await assert.rejects(new FileHubKey(dir).privateKey(), /private\.key does not hold a WireGuard private key/);
});

test('hub key file (SQLite): made once, 0600, read back; many at once agree and none sees a half-made file', async (t) => {
  // A master starting while another writes the file once read it empty and refused it as damaged.
  for (let round = 0; round < 10; round++) {
    const d = await dataDir(t);
    const keys = await Promise.all(Array.from({ length: 8 }, () => new FileHubKey(d).privateKey()));
    assert.equal(new Set(keys).size, 1, `round ${round}: one key for all`);
    assert.deepEqual(await readdir(join(d, 'wg')), ['private.key'], 'no temporary file left');
  }
  const dir = await dataDir(t);
  const [a, b] = await Promise.all([new FileHubKey(dir).privateKey(), new FileHubKey(dir).privateKey()]);
  assert.equal(a, b);
  assert.equal((await readFile(hubKeyFile(dir), 'utf8')).trim(), a);
  assert.equal((await stat(hubKeyFile(dir))).mode & 0o777, 0o600);
  assert.equal(await new FileHubKey(dir).privateKey(), a);
});
