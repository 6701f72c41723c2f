// How far the master holds each stream of a task attempt's log, so a node can resend what it is
// not sure a master stored (one that died) without a line appearing twice. The stored log
// interleaves stdout and stderr and is trimmed at its cap, so the per-stream offsets cannot be
// read back from it: they live in a small record next to it (<task>.held, one fixed-size pwrite
// per append, shared by the masters on one data dir like the log itself). The record also holds
// the log file's size when it was written: a log longer than that ends with an append whose
// record never got written (a master killed between the two writes), which is cut off again so
// the node's resend of those bytes does not duplicate them.
import { open } from 'node:fs/promises';

export type LogStreamName = 'stdout' | 'stderr';

export interface HeldOffsets {
  attempt: number;
  stdout: number;
  stderr: number;
  /** The log file's size right after the append this record belongs to. */
  size: number;
}

/** Bytes of the record on disk: one pwrite, so a killed master leaves the old or the new one. */
const RECORD_BYTES = 128;

/** What to do with a chunk at `offset` of `length` bytes when the master holds its stream up to `held`. */
export interface ChunkPlacement {
  /** Bytes at the head of the chunk already held (dropped); equal to length for a pure resend. */
  skip: number;
  /** Bytes missing between what is held and the chunk's start (appended anyway, the gap noted). */
  gap: number;
}

export function placeChunk(held: number, offset: number, length: number): ChunkPlacement {
  if (offset >= held) return { skip: 0, gap: offset - held };
  return { skip: Math.min(length, held - offset), gap: 0 };
}

/** The line written into the stored log where a stream has a gap. */
export function gapNote(stream: LogStreamName, gap: number): string {
  return `\n[hivemind: ${gap} bytes of ${stream} missing here: the node dropped them (its log buffer was full) or they were lost with a master]\n`;
}

export async function readHeld(path: string): Promise<HeldOffsets | undefined> {
  let text: string;
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(RECORD_BYTES);
      const { bytesRead } = await fh.read(buf, 0, RECORD_BYTES, 0);
      text = buf.subarray(0, bytesRead).toString('utf8').trim();
    } finally {
      await fh.close();
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const r = JSON.parse(text) as Partial<HeldOffsets>;
    const ok = [r.attempt, r.stdout, r.stderr, r.size].every((n) => Number.isSafeInteger(n) && (n as number) >= 0);
    return ok ? (r as HeldOffsets) : undefined;
  } catch {
    // A record we cannot read counts as none: resent chunks are then appended, not lost.
    return undefined;
  }
}

export async function writeHeld(path: string, h: HeldOffsets): Promise<void> {
  const json = JSON.stringify({ attempt: h.attempt, stdout: h.stdout, stderr: h.stderr, size: h.size });
  // 'r+' rewrites in place (an 'a' handle would append); 'w' only when there is no record yet.
  const fh = await open(path, 'r+').catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return open(path, 'w', 0o600);
    throw err;
  });
  try {
    await fh.write(Buffer.from(json.padEnd(RECORD_BYTES, ' ')), 0, RECORD_BYTES, 0);
  } finally {
    await fh.close();
  }
}
