// An upload over a client-streaming gRPC call: a header, the file's bytes in chunks (from an
// offset the receiver already holds), and a trailer with the whole file's size and sha256 for the
// receiver to check. Used for the worker's UploadResult and the CLI's SubmitTask input.
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { open } from 'node:fs/promises';
import type { ClientWritableStream } from '@grpc/grpc-js';
import type { BufferReclaimer } from '../common/buffer-reclaimer.js';
import { readUploadChunk, type ChunkMessage } from '../protocol/chunk-codec.js';
import { CHUNK_SIZE } from '../protocol/transport.js';

export interface UploadBody<Req> {
  file: string;
  /** Bytes the receiver already holds; the upload starts there. Default 0. */
  from?: number;
  /** The file's size as the caller measured it; measured here when absent. */
  size?: number;
  /** The file's sha256 (hex) when known; otherwise computed from the bytes sent (from 0 only). */
  sha256?: string;
  /** The trailer message of this call; none for a call whose header declared size and sha256 already. */
  trailer?(t: { size: number; sha256: string }): Req;
  /** The error for a file that got shorter than `size` while it was sent. */
  shrank(pos: number): Error;
  signal?: AbortSignal;
  onProgress?(sentBytes: number, totalBytes: number): void;
  /** Counts the streamed bytes, to keep memory flat on long transfers. */
  reclaimer?: BufferReclaimer;
}

/**
 * Writes `header`, then (with a body) the file from `from` and the trailer, with backpressure,
 * and ends the call. Waiting for the call's response, and cancelling it on failure, is the
 * caller's part.
 */
export async function sendWithTrailer<Req>(call: ClientWritableStream<Req>, header: Req, body?: UploadBody<Req>): Promise<void> {
  // If the call fails mid-stream, stop reading the file instead of waiting for 'drain' forever.
  const failed = new Promise<never>((_, reject) => call.once('error', reject));
  failed.catch(() => undefined);
  const write = async (msg: Req) => {
    if (!call.write(msg)) await Promise.race([once(call, 'drain'), failed]);
  };
  await write(header);
  if (body) await sendFile(body, write as (msg: Req | ChunkMessage) => Promise<void>);
  call.end();
}

async function sendFile<Req>(b: UploadBody<Req>, write: (msg: Req | ChunkMessage) => Promise<void>): Promise<void> {
  const from = b.from ?? 0;
  if (b.sha256 === undefined && from !== 0) throw new Error('an upload that resumes needs the sha256 of the whole file');
  const hash = b.sha256 === undefined ? createHash('sha256') : undefined;
  let size = b.size;
  if (size === undefined || from < size) {
    const fh = await open(b.file, 'r');
    try {
      size ??= (await fh.stat()).size;
      for (let pos = from; pos < size; ) {
        b.signal?.throwIfAborted();
        const chunk = await readUploadChunk(fh, pos, Math.min(CHUNK_SIZE, size - pos));
        if (!chunk) throw b.shrank(pos);
        hash?.update(chunk.message.part.value);
        pos += chunk.bytes;
        b.reclaimer?.add(chunk.bytes);
        await write(chunk.message);
        b.onProgress?.(pos, size);
      }
    } finally {
      await fh.close();
    }
  }
  if (b.trailer) await write(b.trailer({ size, sha256: b.sha256 ?? hash!.digest('hex') }));
}
