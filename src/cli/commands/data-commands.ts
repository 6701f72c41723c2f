// `hivemind data put | ls | get | rm`: data sets at the master. A put hashes first (a file's
// bytes, or the canonical tar of a directory) and sends only what the master lacks; thin shells
// over DataClient otherwise, printing for humans or JSON with --json.
import { lstat, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { packCanonical } from '../../archive/canonical-tar.js';
import { extractArchive } from '../../archive/extract-archive.js';
import { DataClient } from '../../client/data-client.js';
import { fingerprintPath, PutDigestMemo } from '../../client/put-digest-memo.js';
import { hivemindHome } from '../../config/paths.js';
import { ConfigError } from '../../common/errors.js';
import { formatBytes } from '../../common/units.js';
import { activeMaster } from '../master-choice.js';
import { sha256OfFile } from '../../common/file-hash.js';
import { parseDataRef, validateDataName } from '../../protocol/data-rules.js';
import { type DataSetInfo } from '../../protocol/gen/hivemind/v1/data.js';
import { DataKind } from '../../protocol/gen/hivemind/v1/common.js';
import { printJson, type CliContext } from '../cli-context.js';
import { terminalSafe } from '../terminal-text.js';
import { clientOptions } from './client-commands.js';
import { transferProgress } from '../transfer-progress.js';
import type { StatusStream } from '../status-line.js';

type Ctx = () => CliContext;

async function withData<T>(ctx: CliContext, opts: { master?: string; adminToken?: string }, fn: (c: DataClient) => Promise<T>): Promise<T> {
  const c = await activeMaster(ctx, opts);
  const client = DataClient.connect(c.master, c.adminToken);
  try {
    return await fn(client);
  } finally {
    client.close();
  }
}

function kindName(k: DataKind): 'file' | 'dir' | 'unknown' {
  return k === DataKind.DATA_KIND_FILE ? 'file' : k === DataKind.DATA_KIND_DIR ? 'dir' : 'unknown';
}

/** The JSON of a data set: field names that stay (not the protobuf's). */
export function dataSetJson(d: DataSetInfo): { sha256: string; names: string[]; size: number; kind: string; createdAt: string; createdAtMs: number } {
  return { sha256: d.sha256, names: d.names, size: d.size, kind: kindName(d.kind), createdAt: new Date(d.createdAtMs).toISOString(), createdAtMs: d.createdAtMs };
}

export function formatDataTable(sets: DataSetInfo[]): string {
  if (sets.length === 0) return 'no data sets';
  const rows = sets.map((d) => [d.sha256, d.names.join(',') || '-', formatBytes(d.size), kindName(d.kind), new Date(d.createdAtMs).toISOString()]);
  const head = ['DIGEST', 'NAMES', 'SIZE', 'KIND', 'CREATED'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  return [head, ...rows].map((r) => terminalSafe(r.map((v, i) => v.padEnd(widths[i]!)).join('  ').trimEnd())).join('\n');
}

/** The bytes a put sends and their digest: the file itself, or the canonical tar of a directory in `tmp`. */
async function measure(path: string, tmp: () => Promise<string>): Promise<{ file: string; sha256: string; size: number; kind: DataKind }> {
  const st = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    throw new ConfigError(`data put ${path}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
  });
  if (st.isDirectory()) {
    const file = join(await tmp(), 'data.tar');
    const t = await packCanonical(path, file);
    return { file, sha256: t.sha256, size: t.size, kind: DataKind.DATA_KIND_DIR };
  }
  if (!st.isFile()) throw new ConfigError(`data put ${path}: not a regular file or a directory (a symlink is not followed: name its target)`);
  return { file: path, sha256: await sha256OfFile(path), size: st.size, kind: DataKind.DATA_KIND_FILE };
}

export function registerDataCommands(program: Command, ctx: Ctx): void {
  const data = program.command('data').description('data sets at the master: large inputs stored once, by content');

  clientOptions(
    data
      .command('put')
      .description('store a file or a directory as a data set; prints its digest (sha256:…). Sends nothing the master holds; resumes an interrupted put')
      .argument('<path>', 'a file, or a directory (stored as a canonical tar: sorted, fixed times and owners, modes 0644/0755)')
      .option('--name <name>', 'a label for it (a name in use moves to this data set)')
      .option('--json', 'print JSON'),
  ).action(async (path: string, o) => {
    const c = ctx();
    const name = o.name === undefined ? undefined : validateDataName(o.name, '--name');
    let tmpDir: string | undefined;
    const progress = transferProgress(c.stderr as StatusStream, `data put ${basename(resolve(path))}`);
    const onProgress = (sent: number, total: number) => progress.update(sent, total);
    try {
      const abs = resolve(path);
      const memo = await PutDigestMemo.load(join(hivemindHome(c.env), 'put-digests.json'));
      // An unreadable path is reported by measure() below, with its own message.
      const fingerprint = await fingerprintPath(abs).catch(() => undefined);
      const { r, src, hashed } = await withData(c, o, async (client) => {
        // Unchanged since it was last put, and the master holds it: nothing to hash or send.
        const known = fingerprint === undefined ? undefined : memo.lookup(abs, fingerprint);
        if (known && (await client.stat(known.sha256, known.size)).complete) {
          const src = { file: abs, sha256: known.sha256, size: known.size, kind: known.kind === 'dir' ? DataKind.DATA_KIND_DIR : DataKind.DATA_KIND_FILE };
          return { r: await client.put({ ...src, onProgress, ...(name ? { name } : {}) }), src, hashed: false };
        }
        const src = await measure(path, async () => (tmpDir = await mkdtemp(join(tmpdir(), 'hivemind-data-'))));
        return { r: await client.put({ ...src, onProgress, ...(name ? { name } : {}) }), src, hashed: true };
      });
      progress.done();
      if (fingerprint !== undefined) {
        await memo
          .remember(abs, { fingerprint, sha256: src.sha256, size: src.size, kind: src.kind === DataKind.DATA_KIND_DIR ? 'dir' : 'file', usedAt: Date.now() })
          .catch(() => undefined); // only a shortcut: a memo that cannot be written costs a hash next time
      }
      const sent = r.alreadyHeld ? 0 : src.size - r.resumedFrom;
      if (o.json) {
        printJson(c, { ...dataSetJson(r.info), alreadyHeld: r.alreadyHeld, hashed, resumedFrom: r.resumedFrom, restartedAfterMismatch: r.restartedAfterMismatch, sentBytes: sent });
        return;
      }
      const how = r.alreadyHeld
        ? `held by the master already, nothing sent${hashed ? '' : ' (unchanged since its last put: not hashed again)'}`
        : r.resumedFrom > 0
          ? `resumed at ${formatBytes(r.resumedFrom)}, sent ${formatBytes(sent)}`
          : r.restartedAfterMismatch
            ? `the master's partial copy did not match these bytes and was discarded; sent all ${formatBytes(sent)}`
            : `sent ${formatBytes(sent)}`;
      c.stderr.write(terminalSafe(`${kindName(src.kind)} ${path}: ${formatBytes(src.size)}, ${how}${name ? `, named ${name}` : ''}`) + '\n');
      c.stdout.write(terminalSafe(r.info.sha256) + '\n');
    } finally {
      progress.done();
      if (tmpDir) await rm(tmpDir, { recursive: true, force: true });
    }
  });

  clientOptions(data.command('ls').description('list the data sets, newest first').option('--json', 'print JSON')).action(async (o) => {
    const c = ctx();
    const sets = await withData(c, o, (client) => client.list());
    if (o.json) printJson(c, sets.map(dataSetJson));
    else c.stdout.write(formatDataTable(sets) + '\n');
  });

  clientOptions(
    data
      .command('get')
      .description('download a data set (resumes a partial download; checks the sha256)')
      .argument('<ref>', 'a name or sha256:HEX')
      .requiredOption('-o, --output <file>', 'where to write it (a directory data set is a tar)')
      .option('--extract <dir>', 'also unpack a directory data set into this directory (safely; all or nothing)')
      .option('--json', 'print JSON'),
  ).action(async (ref: string, o) => {
    const c = ctx();
    parseDataRef(ref, 'data set');
    const progress = transferProgress(c.stderr as StatusStream, `data get ${ref}`);
    const { info, got } = await withData(c, o, (client) => client.fetch(ref, o.output, undefined, (done, total) => progress.update(done, total))).finally(() => progress.done());
    if (o.extract) {
      if (info.kind !== DataKind.DATA_KIND_DIR) throw new ConfigError(`--extract: ${info.sha256} is a file data set, not a directory; use the file at ${o.output}`);
      // The canonical tar holds at most its size in content, and every entry takes a 512-byte header.
      await extractArchive(o.output, o.extract, { maxBytes: info.size, maxEntries: Math.ceil(info.size / 512), plainTar: true });
    }
    if (o.json) printJson(c, { ...dataSetJson(info), file: o.output, resumedFrom: got.resumedFrom, extractedTo: o.extract });
    else c.stdout.write(terminalSafe(`${o.output}: ${info.sha256}, ${formatBytes(info.size)}${o.extract ? `, extracted to ${o.extract}` : ''}`) + '\n');
  });

  clientOptions(
    data
      .command('rm')
      .description('remove a data set and all its names (refused while a queued or running task uses it)')
      .argument('<ref>', 'a name or sha256:HEX')
      .option('--json', 'print JSON'),
  ).action(async (ref: string, o) => {
    const c = ctx();
    parseDataRef(ref, 'data set');
    const r = await withData(c, o, (client) => client.remove(ref));
    if (o.json) printJson(c, r);
    else c.stdout.write(terminalSafe(`removed ${r.sha256} (${formatBytes(r.size)})${r.names.length ? `, names ${r.names.join(', ')}` : ''}`) + '\n');
  });
}
