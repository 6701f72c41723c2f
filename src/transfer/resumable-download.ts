// A resumable, verified download of a file streamed in offset-stamped chunks (the worker's task
// input, the CLI's task result): it continues from the bytes already in the file and returns the
// sha256 of the whole file, for the caller to check against what it expects.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { open, rm } from 'node:fs/promises';
import { once } from 'node:events';
import type { BufferReclaimer } from '../common/buffer-reclaimer.js';
import { CHUNK_SIZE } from '../protocol/transport.js';
import { fileSize } from '../common/file-size.js';

/** A piece of the file and where it starts (DataChunk). */
export interface OffsetChunk {
  offset: number;
  data: Uint8Array;
}

export interface ResumableDownload {
  /** The file the bytes are appended to; what is already in it counts as received. */
  file: string;
  /** Opens the call that streams the file's bytes from `offset` on (see callMessages). */
  fetch(offset: number): AsyncIterable<OffsetChunk>;
  /** The whole size, when known: a longer file is started over, a complete one is not fetched. */
  size?: number;
  /** Stops the hashing of the bytes already there; cancelling the call is `fetch`'s part. */
  signal?: AbortSignal;
  /** The error for a chunk that does not start where the file ends. */
  outOfOrder(expected: number, got: number): Error;
  /** The error for a file that cannot be opened for writing; the fs error itself when absent. */
  cannotWrite?(err: NodeJS.ErrnoException): Error;
  /** Counts the streamed bytes, to keep memory flat on long transfers. */
  reclaimer?: BufferReclaimer;
  /** Bytes in the file so far (first the resumed ones, then after each chunk), for a progress line. */
  onProgress?(done: number, total: number | undefined): void;
}

export interface Downloaded {
  /** The file's size at the end. */
  size: number;
  /** The sha256 (hex) of the whole file. */
  sha256: string;
  /** The bytes that were already there (0 for a fresh start). */
  resumedFrom: number;
}


export async function downloadResumable(d: ResumableDownload): Promise<Downloaded> {
  let offset = (await fileSize(d.file)) ?? 0;
  if (d.size !== undefined && offset > d.size) {
    await rm(d.file, { force: true });
    offset = 0;
  }
  const resumedFrom = offset;
  const hash = createHash('sha256');
  if (offset > 0) {
    for await (const buf of createReadStream(d.file, { end: offset - 1, highWaterMark: CHUNK_SIZE, signal: d.signal })) hash.update(buf as Buffer);
  }
  d.onProgress?.(offset, d.size);
  if (d.size === undefined || offset < d.size) {
    // Opened before the call: a destination that cannot be written (no such directory, no
    // permission) is a clear error, not an unhandled stream 'error'.
    const fh = await open(d.file, offset === 0 ? 'w' : 'a').catch((err: NodeJS.ErrnoException) => {
      throw d.cannotWrite ? d.cannotWrite(err) : err;
    });
    const out = fh.createWriteStream();
    let writeError: Error | undefined;
    out.on('error', (err) => (writeError ??= err));
    try {
      for await (const chunk of d.fetch(offset)) {
        if (writeError) throw writeError;
        if (chunk.offset !== offset) throw d.outOfOrder(offset, chunk.offset);
        hash.update(chunk.data);
        offset += chunk.data.length;
        d.reclaimer?.add(chunk.data.length);
        if (!out.write(chunk.data)) await once(out, 'drain');
        d.onProgress?.(offset, d.size);
      }
    } finally {
      // Whatever arrived is flushed, also when the call failed: the next attempt resumes after it.
      if (!out.closed) {
        const closed = once(out, 'close');
        out.end();
        await closed;
      }
    }
    if (writeError) throw writeError;
  }
  return { size: offset, sha256: hash.digest('hex'), resumedFrom };
}
