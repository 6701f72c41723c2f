// Unpacks a tar.gz (a task's result) or a plain tar (a directory data set) into a local directory,
// safely: every entry goes through the safe tar filter first, files are opened without following
// links, and nothing is written through a symlink that already sits in the destination. It unpacks
// into a hidden staging directory beside the destination and moves the entries in only once the
// whole archive passed, so an archive that fails (over a cap, unsafe, corrupt) leaves nothing
// behind, not even a half-written file.
import { constants, createReadStream } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, open, readdir, rename, rm, symlink } from 'node:fs/promises';
import { basename, dirname, join, resolve, sep } from 'node:path';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { UnsafeArchiveError } from '../common/errors.js';
import { gunzipStream, safeTar, type SafeTarStats } from './safe-tar.js';

export interface ExtractOptions {
  /** Cap on the uncompressed content (sum of file sizes); passing it is an ArchiveCapError. */
  maxBytes: number;
  /** Cap on entries (files, directories, links); passing it is an ArchiveCapError. */
  maxEntries: number;
  /** The file is a plain tar (a directory data set), not a tar.gz. Default false. */
  plainTar?: boolean;
  signal?: AbortSignal;
}

const NOFOLLOW = constants.O_NOFOLLOW ?? 0;

/**
 * Extracts `file` into `destDir` (created if missing; an existing one is merged into: files are
 * replaced, directories merged, a directory is never replaced by a file). All or nothing: on any
 * error the destination is as it was.
 */
export async function extractArchive(file: string, destDir: string, opts: ExtractOptions): Promise<SafeTarStats> {
  const root = resolve(destDir);
  const parent = dirname(root);
  // Same directory as the destination: same filesystem, so the final moves are renames.
  const createdParent = await mkdir(parent, { recursive: true });
  // mkdir, not mkdtemp: its 0700 would become the destination's mode when the staging dir is renamed.
  const staging = join(parent, `.${basename(root)}.extracting-${randomBytes(6).toString('hex')}`);
  await mkdir(staging);
  try {
    const stats = await extractInto(file, staging, opts);
    await checkMerge(staging, root, file);
    await moveInto(staging, root);
    // What is left: the (empty) directories that were merged into existing ones.
    await rm(staging, { recursive: true, force: true });
    return stats;
  } catch (err) {
    await rm(createdParent ?? staging, { recursive: true, force: true });
    throw err;
  }
}

async function extractInto(file: string, root: string, opts: ExtractOptions): Promise<SafeTarStats> {
  let stats: SafeTarStats = { entries: 0, bytes: 0 };
  const filtered = safeTar(
    opts.plainTar ? createReadStream(file) : gunzipStream(createReadStream(file)),
    { maxBytes: opts.maxBytes, maxEntries: opts.maxEntries, symlinks: 'contained', label: file },
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

/**
 * Before anything moves: an entry that would replace a real directory of the destination with a
 * file or a link is refused (that would delete the user's files).
 */
async function checkMerge(from: string, to: string, file: string): Promise<void> {
  const dest = await lstat(to).catch(() => undefined);
  if (!dest) return;
  const src = await lstat(from);
  if (dest.isDirectory() && !src.isDirectory()) throw new UnsafeArchiveError(`${file}: "${basename(to)}" would replace the directory ${to} with a file; extract into an empty directory`);
  if (!dest.isDirectory() || !src.isDirectory()) return;
  for (const name of await readdir(from)) await checkMerge(join(from, name), join(to, name), file);
}

/** Moves staged entries in; a destination symlink is replaced, never followed. */
async function moveInto(from: string, to: string): Promise<void> {
  const dest = await lstat(to).catch(() => undefined);
  const src = await lstat(from);
  if (dest?.isDirectory() && src.isDirectory()) {
    for (const name of await readdir(from)) await moveInto(join(from, name), join(to, name));
    return;
  }
  if (dest && src.isDirectory()) await rm(to, { force: true });
  await rename(from, to);
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
