// Data sets on the master's disk, content-addressed: <data dir>/data/sha256/<hex> once verified,
// <hex>.partial while an upload is under way or interrupted. A partial becomes the data set only
// after the sha256 over all its bytes matched the declared digest (then an atomic rename); a
// mismatch deletes it. The running hash of a partial is kept in memory, so completing an upload
// needs no second pass over the bytes (after a master restart it is rebuilt once from the file).
import { createReadStream } from 'node:fs';
import { mkdir, open, rename, rm, statfs } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { DigestMismatchError, formatDigest, InvalidDataError } from '../protocol/data-rules.js';
import { PreconditionError } from './master-errors.js';
import { HashedAppend, resumeRunningHash, type RunningHash } from './hashed-append.js';
import { fileSize } from '../common/file-size.js';
import { sha256OfFile } from '../common/file-hash.js';

export class DataFiles {
  private readonly running = new Map<string, RunningHash>();

  private constructor(private readonly dir: string) {}

  static async create(masterDataDir: string): Promise<DataFiles> {
    const dir = join(masterDataDir, 'data', 'sha256');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    return new DataFiles(dir);
  }

  /** The verified data set's file (callers pass validated hex digests only). */
  path(hex: string): string {
    return join(this.dir, hex);
  }

  private partialPath(hex: string): string {
    return join(this.dir, `${hex}.partial`);
  }

  /** Bytes held of an interrupted upload; undefined when there is no partial. */
  partialBytes(hex: string): Promise<number | undefined> {
    return fileSize(this.partialPath(hex));
  }

  /** Whether the verified file exists. */
  async has(hex: string): Promise<boolean> {
    return (await fileSize(this.path(hex))) !== undefined;
  }

  /** Free bytes on the filesystem holding the data sets. */
  async freeBytes(): Promise<number> {
    const s = await statfs(this.dir);
    return s.bavail * s.bsize;
  }

  /** Opens the partial for appending at `offset`, which must be the bytes it holds. */
  async openPartial(hex: string, offset: number): Promise<HashedAppend> {
    const path = this.partialPath(hex);
    const held = (await fileSize(path)) ?? 0;
    if (offset !== held) throw new PreconditionError(`put ${formatDigest(hex)}: the master holds ${held} bytes of it, the header says offset ${offset}; ask StatData and resume there`);
    const running = await resumeRunningHash(path, held, this.running.get(hex));
    this.running.set(hex, running);
    const fh = await open(path, held === 0 ? 'w' : 'r+', 0o600);
    return new HashedAppend(fh, held, running);
  }

  /**
   * Verifies the complete partial against the declared digest and renames it into place. On a
   * mismatch the partial is deleted, so the next put starts from 0.
   */
  async complete(hex: string, size: number): Promise<void> {
    const partial = this.partialPath(hex);
    const held = (await fileSize(partial)) ?? 0;
    const running = this.running.get(hex);
    this.running.delete(hex);
    if (held !== size) {
      await rm(partial, { force: true });
      throw new InvalidDataError(`put ${formatDigest(hex)}: holding ${held} bytes, the header declared ${size}; the partial upload was discarded, put again`);
    }
    const sha256 = running && running.size === held ? running.hash.digest('hex') : await sha256OfFile(partial);
    if (sha256 !== hex) {
      await rm(partial, { force: true });
      throw new DigestMismatchError(`put ${formatDigest(hex)}: the ${size} bytes received hash to ${formatDigest(sha256)}, not the declared digest; the partial upload was discarded, put again`);
    }
    await rename(partial, this.path(hex));
  }

  async discardPartial(hex: string): Promise<void> {
    this.running.delete(hex);
    await rm(this.partialPath(hex), { force: true });
  }

  async remove(hex: string): Promise<void> {
    await rm(this.path(hex), { force: true });
  }

  /** The data set from `offset` on, in chunks of `chunkSize`. */
  read(hex: string, offset: number, chunkSize: number): Readable {
    return createReadStream(this.path(hex), { start: offset, highWaterMark: chunkSize });
  }
}
