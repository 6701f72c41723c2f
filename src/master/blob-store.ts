// Task inputs, results and logs on disk under the master's data dir. Everything is streamed
// (constant memory); results are resumable uploads verified by sha256 before they count.
import { createHash } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import { echoValue } from '../common/echo-value.js';
import { HivemindError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import { HashedAppend, resumeRunningHash, type RunningHash } from './hashed-append.js';
import { fileSize } from '../common/file-size.js';
import { sha256OfFile } from '../common/file-hash.js';
import { gapNote, placeChunk, readHeld, writeHeld, type HeldOffsets, type LogStreamName } from './log-offsets.js';

/** Default cap of a task's stored log; the end is kept, the head trimmed. */
export const DEFAULT_LOG_MAX_BYTES = 8 * 1024 * 1024;

export class BlobError extends HivemindError {
  constructor(code: 'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'NOT_FOUND', message: string) {
    super(code, message);
  }
}

/** An open append session on a file; writes go straight to disk. */
export interface AppendSession {
  readonly offset: number;
  write(data: Uint8Array): Promise<void>;
  close(): Promise<void>;
}

/** Tasks whose log offsets the master caches (one small record each; the rest are read from disk). */
const HELD_CACHE_TASKS = 20_000;

const SAFE_ID = /^[A-Za-z0-9_-]{1,64}$/;

function checkId(id: string): string {
  // Ids end up in file names: refuse anything that could escape the folder.
  if (!SAFE_ID.test(id)) throw new BlobError('INVALID_ARGUMENT', `"${echoValue(id)}" is not a valid task id`);
  return id;
}



export class BlobStore {
  private readonly logQueues = new Map<string, Promise<unknown>>();
  private readonly partialHashes = new Map<string, RunningHash>();
  /**
   * The last offsets record written per task (log-offsets.ts), checked against the log's size
   * before use: a cache that saves a read per append, of the tasks that logged last.
   */
  private readonly held = new Map<string, HeldOffsets>();

  private constructor(private readonly dir: string, private readonly logMaxBytes: number) {}

  static async create(dataDir: string, opts: { logMaxBytes?: number } = {}): Promise<BlobStore> {
    for (const sub of ['inputs', 'results', 'logs']) await mkdir(join(dataDir, sub), { recursive: true });
    return new BlobStore(dataDir, opts.logMaxBytes ?? DEFAULT_LOG_MAX_BYTES);
  }

  inputPath(taskId: string): string {
    return join(this.dir, 'inputs', `${checkId(taskId)}.tar.gz`);
  }
  private inputPartialPath(taskId: string): string {
    return join(this.dir, 'inputs', `${checkId(taskId)}.partial`);
  }
  resultPath(taskId: string): string {
    return join(this.dir, 'results', `${checkId(taskId)}.tar.gz`);
  }
  private resultPartialPath(taskId: string): string {
    return join(this.dir, 'results', `${checkId(taskId)}.partial`);
  }
  logPath(taskId: string): string {
    return join(this.dir, 'logs', `${checkId(taskId)}.log`);
  }
  private heldPath(taskId: string): string {
    return join(this.dir, 'logs', `${checkId(taskId)}.held`);
  }

  // ---- inputs

  /**
   * Stores a submitted input archive: chunks from `source` are written to a partial file while
   * hashed, then checked against the trailer the caller got and renamed into place.
   */
  async writeInput(taskId: string, chunks: AsyncIterable<Uint8Array>, expect: () => { size: number; sha256: string }): Promise<{ size: number; sha256: string }> {
    const partial = this.inputPartialPath(taskId);
    const fh = await open(partial, 'w', 0o600);
    const running: RunningHash = { hash: createHash('sha256'), size: 0 };
    const session = new HashedAppend(fh, 0, running);
    try {
      try {
        for await (const c of chunks) await session.write(c);
      } finally {
        await session.close();
      }
      const want = expect();
      const size = running.size;
      const sha256 = running.hash.digest('hex');
      if (want.size !== size) throw new BlobError('INVALID_ARGUMENT', `input archive: received ${size} bytes but the trailer says ${want.size}`);
      if (want.sha256.toLowerCase() !== sha256) throw new BlobError('INVALID_ARGUMENT', `input archive: sha256 mismatch (received ${sha256}, trailer says ${want.sha256})`);
      await rename(partial, this.inputPath(taskId));
      return { size, sha256 };
    } catch (err) {
      await rm(partial, { force: true });
      throw err;
    }
  }

  /** The input archive from `offset` on, read in chunks of `chunkSize`. */
  readInput(taskId: string, offset: number, chunkSize: number): Readable {
    return createReadStream(this.inputPath(taskId), { start: offset, highWaterMark: chunkSize });
  }

  // ---- results

  /** Bytes of the current result upload held so far (the size of the .partial file). */
  async resultOffset(taskId: string): Promise<number> {
    return (await fileSize(this.resultPartialPath(taskId))) ?? 0;
  }

  async hasResult(taskId: string): Promise<boolean> {
    return (await fileSize(this.resultPath(taskId))) !== undefined;
  }

  /** Opens the partial result for appending; `offset` must equal the bytes already held. */
  async openResultUpload(taskId: string, offset: number): Promise<AppendSession> {
    const held = await this.resultOffset(taskId);
    if (offset !== held) {
      throw new BlobError('FAILED_PRECONDITION', `result upload for task ${taskId} must resume at offset ${held}, not ${offset} (ask GetUploadOffset)`);
    }
    const path = this.resultPartialPath(taskId);
    const running = await resumeRunningHash(path, held, this.partialHashes.get(taskId));
    this.partialHashes.set(taskId, running);
    const fh = await open(path, held === 0 ? 'w' : 'r+', 0o600);
    return new HashedAppend(fh, held, running);
  }

  /**
   * Verifies the whole partial result against the trailer (streamed hash) and renames it into
   * place atomically. On a mismatch the partial is deleted so the next upload starts over.
   */
  async completeResult(taskId: string, want: { size: number; sha256: string }): Promise<void> {
    const partial = this.resultPartialPath(taskId);
    const size = (await fileSize(partial)) ?? 0;
    if (size !== want.size) {
      await rm(partial, { force: true });
      throw new BlobError('INVALID_ARGUMENT', `result of task ${taskId}: holding ${size} bytes but the trailer says ${want.size}; partial upload discarded, upload again from 0`);
    }
    const running = this.partialHashes.get(taskId);
    this.partialHashes.delete(taskId);
    const sha256 = running && running.size === size ? running.hash.digest('hex') : await sha256OfFile(partial);
    if (sha256 !== want.sha256.toLowerCase()) {
      await rm(partial, { force: true });
      throw new BlobError('INVALID_ARGUMENT', `result of task ${taskId}: sha256 mismatch (stored ${sha256}, trailer says ${want.sha256}); partial upload discarded, upload again from 0`);
    }
    await rename(partial, this.resultPath(taskId));
  }

  async resultSize(taskId: string): Promise<number | undefined> {
    return fileSize(this.resultPath(taskId));
  }

  readResult(taskId: string, offset: number, chunkSize: number): Readable {
    return createReadStream(this.resultPath(taskId), { start: offset, highWaterMark: chunkSize });
  }

  /** Drops the result (partial or complete) of a superseded attempt. */
  async discardResult(taskId: string): Promise<void> {
    this.partialHashes.delete(taskId);
    await rm(this.resultPartialPath(taskId), { force: true });
    await rm(this.resultPath(taskId), { force: true });
  }

  // ---- logs

  /**
   * Runs `fn` after every earlier log operation of this task has finished, and before any later
   * one starts. Appends go through here; followers use it to take a consistent snapshot.
   */
  withLogLock<T>(taskId: string, fn: () => Promise<T>): Promise<T> {
    const prev = this.logQueues.get(taskId) ?? Promise.resolve();
    const next = prev.then(fn, fn);
    const tail = next.catch(() => undefined);
    this.logQueues.set(taskId, tail);
    void tail.then(() => {
      if (this.logQueues.get(taskId) === tail) this.logQueues.delete(taskId);
    });
    return next;
  }

  /**
   * Appends to a task's log; when the log passes its cap the head is trimmed so the last 3/4 of
   * the cap is kept (the end of a log is what explains a failure). `after` runs under the lock.
   */
  appendLog(taskId: string, data: Uint8Array, after?: () => void): Promise<void> {
    const path = this.logPath(taskId);
    return this.withLogLock(taskId, async () => {
      const fh = await open(path, 'a', 0o600);
      let size: number;
      try {
        await fh.write(data);
        size = (await fh.stat()).size;
      } finally {
        await fh.close();
      }
      if (size > this.logMaxBytes) size = await this.trimLogHead(path, size);
      // An attempt whose chunks carry offsets keeps its record in step, or the next offset append
      // would take these bytes for an unrecorded append and cut them off.
      const rec = this.held.get(taskId);
      if (rec) await this.recordHeld(taskId, { ...rec, size });
      after?.();
    });
  }

  /**
   * Appends a chunk that says where it starts in its stream of the attempt: the part the log
   * already holds is dropped (a node's resend after a master died), a gap before it is noted in
   * the log. Returns what was appended (undefined for a pure resend); `after` gets it under the lock.
   */
  appendLogAt(taskId: string, at: { attempt: number; stream: LogStreamName; offset: number }, data: Buffer, after?: (appended: Buffer) => void): Promise<{ appended: Buffer | undefined; gap: number }> {
    const path = this.logPath(taskId);
    return this.withLogLock(taskId, async () => {
      const fh = await open(path, 'a', 0o600);
      let rec: HeldOffsets;
      let out: Buffer;
      let gap: number;
      try {
        let size = (await fh.stat()).size;
        let known = this.held.get(taskId);
        if (!known || known.size !== size) known = await readHeld(this.heldPath(taskId));
        if (known && known.attempt === at.attempt && known.size < size) {
          // The last append's record was never written (its master was killed in between): those
          // bytes are not held as far as the node knows, and it resends them.
          await fh.truncate(known.size);
          size = known.size;
        }
        // A record larger than the log: a trim came after it; the offsets still hold.
        rec = known && known.attempt === at.attempt ? { ...known, size } : { attempt: at.attempt, stdout: 0, stderr: 0, size };
        const place = placeChunk(rec[at.stream], at.offset, data.length);
        if (place.skip === data.length) {
          this.cacheHeld(taskId, rec);
          return { appended: undefined, gap: 0 };
        }
        gap = place.gap;
        const body = data.subarray(place.skip);
        out = gap > 0 ? Buffer.concat([Buffer.from(gapNote(at.stream, gap)), body]) : body;
        await fh.write(out);
        rec = { ...rec, [at.stream]: at.offset + data.length, size: size + out.length };
      } finally {
        await fh.close();
      }
      await this.recordHeld(taskId, rec);
      if (rec.size > this.logMaxBytes) await this.recordHeld(taskId, { ...rec, size: await this.trimLogHead(path, rec.size) });
      after?.(out);
      return { appended: out, gap };
    });
  }

  /** How much of the attempt's stdout and stderr the log holds (0 for an attempt it has no record of). */
  logHeld(taskId: string, attempt: number): Promise<{ stdout: number; stderr: number }> {
    return this.withLogLock(taskId, async () => {
      // Read from disk: another master on this data dir may have appended since.
      const rec = await readHeld(this.heldPath(taskId));
      return rec && rec.attempt === attempt ? { stdout: rec.stdout, stderr: rec.stderr } : { stdout: 0, stderr: 0 };
    });
  }

  private async recordHeld(taskId: string, rec: HeldOffsets): Promise<void> {
    await writeHeld(this.heldPath(taskId), rec);
    this.cacheHeld(taskId, rec);
  }

  private cacheHeld(taskId: string, rec: HeldOffsets): void {
    // Re-inserted at the end, so the first key is the task that logged least recently.
    this.held.delete(taskId);
    this.held.set(taskId, rec);
    if (this.held.size > HELD_CACHE_TASKS) this.held.delete(this.held.keys().next().value!);
  }

  /** Returns the log's new size. */
  private async trimLogHead(path: string, size: number): Promise<number> {
    const keep = Math.floor((this.logMaxBytes * 3) / 4);
    const tmp = `${path}.trim`;
    const out = createWriteStream(tmp, { mode: 0o600 });
    const note = `[hivemind: earlier output trimmed, log kept to its last ${formatBytes(keep)}]\n`;
    out.write(note);
    await pipeline(createReadStream(path, { start: size - keep }), out);
    await rename(tmp, path);
    return Buffer.byteLength(note) + keep;
  }

  /**
   * Opens the stored log as it is now: its size and a stream of exactly those bytes. Call under
   * withLogLock; the open fd keeps reading the same bytes even if a later append trims the file.
   */
  async snapshotLog(taskId: string, chunkSize: number): Promise<{ size: number; stream: Readable | undefined }> {
    let fh: FileHandle;
    try {
      fh = await open(this.logPath(taskId), 'r');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { size: 0, stream: undefined };
      throw err;
    }
    const size = (await fh.stat()).size;
    if (size === 0) {
      await fh.close();
      return { size, stream: undefined };
    }
    return { size, stream: fh.createReadStream({ start: 0, end: size - 1, highWaterMark: chunkSize, autoClose: true }) };
  }
}
