// Unpacks a tar.gz (a task's result) into a local directory, safely: every entry goes through the
// safe tar filter first, files are opened without following links, and nothing is written through
// a symlink that already sits in the destination.
import { constants, createReadStream } from 'node:fs';
import { lstat, mkdir, open, rm, symlink } from 'node:fs/promises';
import { join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { UnsafeArchiveError } from '../common/errors.js';
import { gunzipStream, safeTar, type SafeTarStats } from './safe-tar.js';

export interface ExtractOptions {
  /** Cap on the uncompressed content. Default 64 GiB (the master already capped the task's output). */
  maxBytes?: number;
  /** Cap on entries. Default 1 000 000. */
  maxEntries?: number;
  signal?: AbortSignal;
}

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

export async function extractArchive(file: string, destDir: string, opts: ExtractOptions = {}): Promise<SafeTarStats> {
  const root = resolve(destDir);
  await mkdir(root, { recursive: true });
  let stats: SafeTarStats = { entries: 0, bytes: 0 };
  const filtered = safeTar(
    gunzipStream(createReadStream(file)),
    { maxBytes: opts.maxBytes ?? 64 * 1024 ** 3, maxEntries: opts.maxEntries ?? 1_000_000, symlinks: 'contained', label: file },
    { onDone: (s) => (stats = s) },
  );
  const extract = tarStream.extract();
  const feeding = pipeline(filtered, extract as unknown as NodeJS.WritableStream, opts.signal ? { signal: opts.signal } : {});
  feeding.catch(() => undefined);
  for await (const entry of extract) {
    const h = entry.header;
    const target = join(root, h.name);
    if (target !== root && !target.startsWith(root + sep)) throw new UnsafeArchiveError(`${file}: entry "${h.name}" resolves outside ${root}`);
    await refuseLinkedParents(root, h.name, file);
    if (h.type === 'directory') {
      await mkdir(target, { recursive: true, mode: (h.mode ?? 0o755) | 0o700 });
      for await (const _ of entry) void _;
    } else if (h.type === 'symlink') {
      await rm(target, { force: true });
      await symlink(h.linkname!, target);
      for await (const _ of entry) void _;
    } else {
      await mkdir(join(target, '..'), { recursive: true });
      const fd = await open(target, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | NOFOLLOW, (h.mode ?? 0o644) | 0o600);
      await pipeline(entry, fd.createWriteStream());
    }
  }
  await feeding;
  return stats;
}

/** A symlink already in the destination (from this archive or not) must not redirect a write. */
async function refuseLinkedParents(root: string, name: string, file: string): Promise<void> {
  const parts = name.split('/').filter(Boolean);
  let here = root;
  for (const p of parts.slice(0, -1)) {
    here = join(here, p);
    const st = await lstat(here).catch(() => undefined);
    if (st?.isSymbolicLink()) throw new UnsafeArchiveError(`${file}: entry "${name}" would be written through the symlink ${here}`);
  }
}
