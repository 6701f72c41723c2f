// The canonical archive of a directory data set: an uncompressed tar whose bytes depend only on
// the tree's paths, contents and executable bits, so the same tree always hashes the same (its
// sha256 is the data set's identity). Paths are sorted, every entry has mtime 0, uid/gid 0, no
// user or group names, mode 0755 (directories, executable files) or 0644. Only regular files and
// directories: a symlink or a special file is refused naming its path (a link's meaning depends
// on where the tree is mounted; copy the file in instead). Uncompressed, because gzip's output is
// not promised stable across zlib versions, and models and data compress poorly anyway.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { Readable, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { UnsafeArchiveError } from '../common/errors.js';
import { addTarEntry, type TarHeader } from './tar-entry.js';

export interface CanonicalTar {
  /** Size of the archive in bytes. */
  size: number;
  /** sha256 (hex) of the archive. */
  sha256: string;
  /** Files and directories in it. */
  entries: number;
  /** Bytes of file content in it. */
  contentBytes: number;
}

const EPOCH = new Date(0);

/** The mode a canonical entry gets: the executable bit decides, nothing else. */
export function canonicalMode(type: 'file' | 'directory', mode: number): number {
  return type === 'directory' || (mode & 0o111) !== 0 ? 0o755 : 0o644;
}

/** Names in one directory in the canonical order: by code unit, independent of locale. */
export function canonicalOrder(names: readonly string[]): string[] {
  return [...names].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
}

/**
 * Writes the canonical tar of `dir` to `outFile` and returns its size and sha256. On any error
 * (a symlink, a special file, a read failure, an abort) the output file is removed.
 */
export async function packCanonical(dir: string, outFile: string, signal?: AbortSignal): Promise<CanonicalTar> {
  try {
    return await writeCanonical(dir, createWriteStream(outFile, { mode: 0o600 }), signal);
  } catch (err) {
    await rm(outFile, { force: true });
    throw err;
  }
}

/**
 * The sha256 (hex) of the canonical tar of `dir`, computed without writing it anywhere: how a node
 * checks that an unpacked directory data set is still the one its digest names.
 */
export async function hashCanonical(dir: string, signal?: AbortSignal): Promise<string> {
  const discard = new Writable({ write: (_chunk, _enc, cb) => cb() });
  return (await writeCanonical(dir, discard, signal)).sha256;
}

async function writeCanonical(dir: string, sink: Writable, signal?: AbortSignal): Promise<CanonicalTar> {
  const root = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    throw new UnsafeArchiveError(`${dir}: ${err.code === 'ENOENT' ? 'no such file or directory' : err.message}`);
  });
  if (!root.isDirectory()) throw new UnsafeArchiveError(`${dir}: not a directory`);
  const pack = tarStream.pack();
  const out: CanonicalTar = { size: 0, sha256: '', entries: 0, contentBytes: 0 };

  const add = (header: TarHeader, body?: Readable) => addTarEntry(pack, header, body);

  const common = { mtime: EPOCH, uid: 0, gid: 0, uname: '', gname: '' };
  const walk = async (rel: string): Promise<void> => {
    for (const name of canonicalOrder(await readdir(join(dir, rel)))) {
      signal?.throwIfAborted();
      const relPath = rel ? `${rel}/${name}` : name;
      const full = join(dir, relPath);
      const st = await lstat(full);
      if (st.isDirectory()) {
        out.entries++;
        await add({ ...common, name: `${relPath}/`, type: 'directory', mode: canonicalMode('directory', st.mode) });
        await walk(relPath);
      } else if (st.isFile()) {
        out.entries++;
        out.contentBytes += st.size;
        // The size is the one lstat saw: a file that changes while packed fails the entry (tar-stream
        // checks the byte count), rather than making an archive that hashes differently next time.
        await add({ ...common, name: relPath, type: 'file', size: st.size, mode: canonicalMode('file', st.mode) }, createReadStream(full));
      } else if (st.isSymbolicLink()) {
        throw new UnsafeArchiveError(`${dir}: "${relPath}" is a symlink; a data set holds only files and directories (copy the target in instead)`);
      } else {
        throw new UnsafeArchiveError(`${dir}: "${relPath}" is a special file (device, fifo or socket); a data set holds only files and directories`);
      }
    }
  };

  const hash = createHash('sha256');
  const measure = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash.update(chunk);
      out.size += chunk.length;
      cb(null, chunk);
    },
  });
  const producing = walk('').then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err as Error),
  );
  try {
    await pipeline(Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false }), measure, sink, signal ? { signal } : {});
    await producing;
  } catch (err) {
    await producing.catch(() => undefined);
    throw err;
  }
  out.sha256 = hash.digest('hex');
  return out;
}
