// `hivemind worker cache ls | rm | pin | unpin`: the node's data cache, seen and changed by the
// operator from another process than the worker, through the cache's own SQLite index (whose
// leases make `rm` refuse an entry a task holds, whether or not the worker is running).
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { ConfigError, HivemindError } from '../../common/errors.js';
import { formatBytes } from '../../common/units.js';
import { hivemindHome } from '../../config/paths.js';
import { formatDigest, parseDigest, DIGEST_PREFIX } from '../../protocol/data-rules.js';
import { CacheIndex, type CacheEntry } from '../../worker/data-cache/cache-index.js';
import { CacheEntryInUseError } from '../../worker/data-cache/cache-errors.js';
import { discardEntry } from '../../worker/data-cache/entry-files.js';
import { printJson, type CliContext } from '../cli-context.js';
import { terminalSafe } from '../terminal-text.js';

type Ctx = () => CliContext;

/** The JSON of a cache entry: field names that stay. */
export function cacheEntryJson(e: CacheEntry) {
  return {
    sha256: formatDigest(e.digest),
    kind: e.kind,
    size: e.sizeBytes,
    state: e.state,
    pinned: e.pinned,
    inUse: e.leases,
    uses: e.uses,
    lastUsedAt: new Date(e.lastUsedAt).toISOString(),
    createdAt: new Date(e.createdAt).toISOString(),
  };
}

export function formatCacheTable(entries: readonly CacheEntry[]): string {
  if (entries.length === 0) return 'the data cache is empty';
  const total = entries.reduce((s, e) => s + e.sizeBytes, 0);
  const rows = entries.map((e) => [
    formatDigest(e.digest),
    e.kind,
    formatBytes(e.sizeBytes),
    e.state,
    e.pinned ? 'yes' : '-',
    e.leases > 0 ? `${e.leases} task${e.leases === 1 ? '' : 's'}` : '-',
    new Date(e.lastUsedAt).toISOString(),
  ]);
  const head = ['DIGEST', 'KIND', 'SIZE', 'STATE', 'PINNED', 'IN USE', 'LAST USED'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const lines = [head, ...rows].map((r) => terminalSafe(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd()));
  return `${lines.join('\n')}\n${entries.length} entr${entries.length === 1 ? 'y' : 'ies'}, ${formatBytes(total)}`;
}

/** A digest as the operator gives it: `sha256:HEX` (as `ls` prints it) or the bare 64 hex digits. */
function digestArg(value: string): string {
  return parseDigest(value.startsWith(DIGEST_PREFIX) ? value : DIGEST_PREFIX + value, 'DIGEST');
}

function cacheDir(ctx: CliContext, dataDir: string | undefined): string {
  const dir = join(dataDir ?? join(hivemindHome(ctx.env), 'worker'), 'cache');
  if (!existsSync(join(dir, 'index.db'))) {
    throw new ConfigError(`no data cache in ${dir}: a worker creates it at its first start (is --data-dir the worker's data dir?)`);
  }
  return dir;
}

function withIndex<T>(ctx: CliContext, dataDir: string | undefined, fn: (index: CacheIndex, dir: string) => T): T {
  const dir = cacheDir(ctx, dataDir);
  const index = CacheIndex.open(join(dir, 'index.db'));
  try {
    return fn(index, dir);
  } finally {
    index.close();
  }
}

const notCached = (digest: string) => new HivemindError('NOT_FOUND', `${formatDigest(digest)} is not in the data cache (see \`hivemind worker cache ls\`)`);

export function registerWorkerCacheCommands(worker: Command, ctx: Ctx): void {
  const cache = worker.command('cache').description("the node's data cache: data sets tasks mounted, kept by digest");
  const dataDirOption = (c: Command) => c.option('--data-dir <dir>', "the worker's data dir (default $HIVEMIND_HOME/worker)");

  dataDirOption(cache.command('ls').description('list the cached data sets, most recently used first').option('--json', 'print JSON')).action((o: { dataDir?: string; json?: boolean }) => {
    const c = ctx();
    const entries = withIndex(c, o.dataDir, (index) => index.list());
    if (o.json) printJson(c, entries.map(cacheEntryJson));
    else c.stdout.write(formatCacheTable(entries) + '\n');
  });

  dataDirOption(cache.command('rm').description('remove a cached data set no task holds (a task needing it later fetches it again)').argument('<digest>', 'sha256:HEX, as `ls` prints it')).action(
    async (value: string, o: { dataDir?: string }) => {
      const c = ctx();
      const digest = digestArg(value);
      const dir = cacheDir(c, o.dataDir);
      const r = withIndex(c, o.dataDir, (index) => index.removeIfFree(digest));
      if (r === 'leased') throw new CacheEntryInUseError(`${formatDigest(digest)} is in use by a task; it can be removed once no task holds it`);
      if (r === 'absent') throw notCached(digest);
      await discardEntry(dir, digest, Date.now());
      c.stdout.write(`removed ${formatDigest(digest)}\n`);
    },
  );

  for (const [name, pinned, help] of [
    ['pin', true, 'keep a cached data set: never evicted to make room'],
    ['unpin', false, 'let a pinned data set be evicted again when room is needed'],
  ] as const) {
    dataDirOption(cache.command(name).description(help).argument('<digest>', 'sha256:HEX, as `ls` prints it')).action((value: string, o: { dataDir?: string }) => {
      const c = ctx();
      const digest = digestArg(value);
      if (!withIndex(c, o.dataDir, (index) => index.setPinned(digest, pinned))) throw notCached(digest);
      c.stdout.write(`${pinned ? 'pinned' : 'unpinned'} ${formatDigest(digest)}\n`);
    });
  }
}
