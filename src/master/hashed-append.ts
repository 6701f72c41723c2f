// Appending to a partial file on the master's disk (a task result, a data set) while keeping the
// running sha256 of its bytes, so that completing the upload needs no second pass over them.
import { createHash, type Hash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';

/** The sha256 of a partial file's first `size` bytes, as far as they have been written. */
export interface RunningHash {
  hash: Hash;
  size: number;
}

export class HashedAppend {
  private pos: number;
  constructor(private readonly fh: FileHandle, readonly offset: number, private readonly running: RunningHash) {
    this.pos = offset;
  }

  /** Where the file ends now. */
  get written(): number {
    return this.pos;
  }

  async write(data: Uint8Array): Promise<void> {
    let done = 0;
    while (done < data.length) {
      const { bytesWritten } = await this.fh.write(data, done, data.length - done, this.pos);
      done += bytesWritten;
      this.pos += bytesWritten;
    }
    this.running.hash.update(data);
    this.running.size += data.length;
  }

  async close(): Promise<void> {
    await this.fh.close();
  }
}

/**
 * The running hash of a partial file holding `held` bytes: `known` when it covers exactly those,
 * else (a resume after a master restart, or a mismatch) hashed once from the file.
 */
export async function resumeRunningHash(path: string, held: number, known: RunningHash | undefined): Promise<RunningHash> {
  if (known && known.size === held) return known;
  const running: RunningHash = { hash: createHash('sha256'), size: 0 };
  if (held > 0) {
    for await (const chunk of createReadStream(path, { end: held - 1 })) running.hash.update(chunk as Buffer);
    running.size = held;
  }
  return running;
}
