// `hivemind worker cache ls | rm | pin | unpin` from another process than the worker: through the
// cache's index, with a task's lease (held by a live worker's cache) making rm refuse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Command } from 'commander';
import { ManualClock } from '../../src/common/clock.js';
import { silentLogger } from '../../src/common/logger.js';
import { registerServerCommands } from '../../src/cli/commands/server-commands.js';
import type { CliContext } from '../../src/cli/cli-context.js';
import { DataCache, type DataRef } from '../../src/worker/data-cache/data-cache.js';

async function run(args: string[]): Promise<{ out: string; err?: Error }> {
  const stdout = new PassThrough();
  let out = '';
  stdout.on('data', (b: Buffer) => (out += b.toString()));
  const ctx: CliContext = { env: {}, stdout, stderr: new PassThrough(), logger: () => silentLogger() };
  const program = new Command().exitOverride();
  registerServerCommands(program, () => ctx, () => undefined);
  try {
    await program.parseAsync(['node', 'hivemind', ...args]);
    return { out };
  } catch (err) {
    return { out, err: err as Error };
  }
}

test('worker cache: ls shows entries; pin and unpin; rm refuses a held entry, removes a free one', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'hm-cachecli-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const blobs = new Map<string, Buffer>();
  const add = (b: Buffer): DataRef => {
    const digest = createHash('sha256').update(b).digest('hex');
    blobs.set(digest, b);
    return { digest, kind: 'file', sizeBytes: b.length };
  };
  const cache = await DataCache.open({
    dir: join(dataDir, 'cache'),
    budgetBytes: 1 << 20,
    source: { fetch: async function* (ref) { yield { offset: 0, data: blobs.get(ref.digest)! }; } },
    clock: new ManualClock(1_700_000_000_000),
    logger: silentLogger(),
    unpack: async () => undefined,
    hashEntry: async () => '',
  });
  t.after(() => cache.close());
  const held = add(randomBytes(3000));
  const free = add(randomBytes(2000));
  const lease = await cache.acquire(held, 'task-1:1', new AbortController().signal);
  (await cache.acquire(free, 'task-2:1', new AbortController().signal)).release();

  const ls = await run(['worker', 'cache', 'ls', '--data-dir', dataDir]);
  assert.equal(ls.err, undefined);
  assert.match(ls.out, /^DIGEST\s+KIND\s+SIZE\s+STATE\s+PINNED\s+IN USE\s+LAST USED/);
  assert.match(ls.out, new RegExp(`sha256:${held.digest}\\s+file\\s+2\\.9 KiB\\s+ready\\s+-\\s+1 task`));
  assert.match(ls.out, /2 entries, 4\.9 KiB/);

  assert.equal((await run(['worker', 'cache', 'pin', `sha256:${free.digest}`, '--data-dir', dataDir])).out, `pinned sha256:${free.digest}\n`);
  const json = JSON.parse((await run(['worker', 'cache', 'ls', '--json', '--data-dir', dataDir])).out) as { sha256: string; pinned: boolean; inUse: number }[];
  assert.deepEqual(json.map((e) => [e.sha256, e.pinned, e.inUse]).sort(), [[`sha256:${free.digest}`, true, 0], [`sha256:${held.digest}`, false, 1]].sort());
  assert.equal((await run(['worker', 'cache', 'unpin', free.digest, '--data-dir', dataDir])).out, `unpinned sha256:${free.digest}\n`);

  const refused = await run(['worker', 'cache', 'rm', `sha256:${held.digest}`, '--data-dir', dataDir]);
  assert.match(refused.err?.message ?? '', new RegExp(`sha256:${held.digest} is in use by a task; it can be removed once no task holds it`));
  assert.ok((await stat(lease.path)).isFile(), 'the held entry is still there');

  assert.equal((await run(['worker', 'cache', 'rm', `sha256:${free.digest}`, '--data-dir', dataDir])).out, `removed sha256:${free.digest}\n`);
  await assert.rejects(stat(join(dataDir, 'cache', 'entries', free.digest)), /ENOENT/);
  assert.deepEqual(cache.list().map((e) => e.digest), [held.digest], 'the worker sees the removal');
  assert.match((await run(['worker', 'cache', 'rm', `sha256:${free.digest}`, '--data-dir', dataDir])).err?.message ?? '', /is not in the data cache/);
  assert.match((await run(['worker', 'cache', 'pin', 'sha256:zz', '--data-dir', dataDir])).err?.message ?? '', /DIGEST "sha256:zz" is not a digest/);
  assert.match((await run(['worker', 'cache', 'ls', '--data-dir', join(dataDir, 'nope')])).err?.message ?? '', /no data cache in .*nope\/cache: a worker creates it at its first start/);
});
