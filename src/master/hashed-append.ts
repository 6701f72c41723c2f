// Appending to a partial file on the master's disk (a task result, a data set) while keeping the
// running sha256 of its bytes, so that completing the upload needs no second pass over them.
import type { Hash } from 'node:crypto';
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
