// The files of a data cache entry on disk: how a directory data set is unpacked (the safe
// extraction, capped by the data set's size, then checked to be exactly the canonical tree its
// digest names), how an entry is hashed again, and the read-only modes that keep tasks (and
// anything else on the node) from changing what other tasks will read.
import { chmod, lstat, readdir, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { hashCanonical } from '../../archive/canonical-tar.js';
import { extractArchive } from '../../archive/extract-archive.js';
import { DataCorruptError } from './cache-errors.js';
import type { DataKind } from './cache-index.js';
import { sha256OfFile } from '../../common/file-hash.js';

/** A tar entry takes at least one 512-byte header: an archive of N bytes holds at most N/512 entries. */
const TAR_BLOCK = 512;

/** The sha256 (hex) of a file entry's bytes, or of a directory entry's canonical tar. */
export async function hashEntry(path: string, kind: DataKind, signal: AbortSignal): Promise<string> {
  return kind === 'dir' ? hashCanonical(path, signal) : sha256OfFile(path, signal);
}

/**
 * Unpacks a directory data set's verified archive into `dest`. The archive's bytes match the digest,
 * but whoever chose the digest (an external url's author) chose the bytes too: the extraction is the
 * safe one, capped by the archive's own size, and the tree must pack back to the same digest, so
 * only a canonical archive (files and directories, nothing else) is ever mounted.
 */
export async function unpackDataSet(archive: string, dest: string, digest: string, signal: AbortSignal): Promise<void> {
  const size = (await lstat(archive)).size;
  await extractArchive(archive, dest, { plainTar: true, maxBytes: size, maxEntries: Math.max(1, Math.ceil(size / TAR_BLOCK)), signal });
  const got = await hashCanonical(dest, signal);
  if (got !== digest) {
    throw new DataCorruptError(`data set sha256:${digest}: its archive is not a canonical one (unpacked, it packs to sha256:${got}); a data set is made by \`hivemind data put\``);
  }
}

/**
 * Makes an entry read-only for everyone (files 0444, or 0555 when executable; directories 0555),
 * deepest first. The executable bit is kept: it is part of the canonical tree.
 */
export async function makeReadOnly(path: string): Promise<void> {
  const st = await lstat(path);
  if (st.isDirectory()) {
    for (const name of await readdir(path)) await makeReadOnly(join(path, name));
    await chmod(path, 0o555);
  } else if (st.isFile()) {
    await chmod(path, (st.mode & 0o111) !== 0 ? 0o555 : 0o444);
  }
}

/** Gives a directory entry's directories back their owner's write bit, so it can be moved and deleted. */
export async function makeRemovable(path: string): Promise<void> {
  const st = await lstat(path).catch(() => undefined);
  if (!st?.isDirectory()) return;
  await chmod(path, 0o700);
  for (const name of await readdir(path)) await makeRemovable(join(path, name));
}

/**
 * Deletes an entry's files (its entry and any partial download) under the cache dir `dir`: moved
 * aside at once, so that a new download never meets them, then deleted. Used by the worker's cache
 * and by `hivemind worker cache rm` (another process) alike, once the index row is gone.
 */
export async function discardEntry(dir: string, digest: string, now: number): Promise<void> {
  const trash = join(dir, 'trash', `${digest}.${now}.${Math.random().toString(36).slice(2)}`);
  const moves: [string, string][] = [
    [join(dir, 'entries', digest), trash],
    [join(dir, 'partial', digest), `${trash}.partial`],
  ];
  for (const [from, to] of moves) {
    try {
      await makeRemovable(from);
      await rename(from, to);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  await rm(trash, { recursive: true, force: true });
  await rm(`${trash}.partial`, { force: true });
}
