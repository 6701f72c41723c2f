// Packs a local directory into a tar.gz for a task's /input, streaming with constant memory.
// Links are never followed: a relative symlink that stays inside the directory is kept as a link;
// anything that would point outside it, and special files (devices, fifos, sockets), are refused.
import { createReadStream, createWriteStream } from 'node:fs';
import { lstat, readdir, readlink, rm } from 'node:fs/promises';
import { join, posix } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import tarStream from 'tar-stream';
import { UnsafeArchiveError } from '../common/errors.js';
import { gzipStream } from './safe-tar.js';
import { addTarEntry, type TarHeader } from './tar-entry.js';

export interface PackStats {
  entries: number;
  bytes: number;
}

/** Writes `dir` as a tar.gz to `outFile`; entry names are relative to `dir` (no leading "./"). */
export async function packDirectory(dir: string, outFile: string, signal?: AbortSignal): Promise<PackStats> {
  const root = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    throw new UnsafeArchiveError(`--input ${dir}: ${err.code === 'ENOENT' ? 'no such directory' : err.message}`);
  });
  if (!root.isDirectory()) throw new UnsafeArchiveError(`--input ${dir}: not a directory`);
  const pack = tarStream.pack();
  const stats: PackStats = { entries: 0, bytes: 0 };

  const add = (header: TarHeader, body?: Readable) => addTarEntry(pack, header, body);

  const walk = async (rel: string): Promise<void> => {
    const names = (await readdir(join(dir, rel))).sort();
    for (const name of names) {
      signal?.throwIfAborted();
      const relPath = rel ? `${rel}/${name}` : name;
      const full = join(dir, relPath);
      const st = await lstat(full);
      const common = { mode: st.mode & 0o777, mtime: st.mtime, uid: 0, gid: 0 };
      stats.entries++;
      if (st.isDirectory()) {
        await add({ ...common, name: `${relPath}/`, type: 'directory' });
        await walk(relPath);
      } else if (st.isFile()) {
        stats.bytes += st.size;
        await add({ ...common, name: relPath, type: 'file', size: st.size }, createReadStream(full));
      } else if (st.isSymbolicLink()) {
        const target = await readlink(full);
        const resolved = posix.normalize(posix.join(posix.dirname(relPath), target));
        if (posix.isAbsolute(target) || resolved === '..' || resolved.startsWith('../')) {
          throw new UnsafeArchiveError(`--input ${dir}: "${relPath}" is a symlink to "${target}", outside the directory; copy the file in instead`);
        }
        await add({ ...common, name: relPath, type: 'symlink', linkname: target });
      } else {
        throw new UnsafeArchiveError(`--input ${dir}: "${relPath}" is a special file (device, fifo or socket); only files, directories and symlinks can be sent`);
      }
    }
  };

  const producing = walk('').then(
    () => pack.finalize(),
    (err: unknown) => pack.destroy(err as Error),
  );
  try {
    await pipeline(Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false }), gzipStream(), createWriteStream(outFile, { mode: 0o600 }), signal ? { signal } : {});
    await producing;
  } catch (err) {
    await producing.catch(() => undefined);
    await rm(outFile, { force: true });
    throw err;
  }
  return stats;
}
