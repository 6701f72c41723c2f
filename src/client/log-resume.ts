// Where a followed task log stopped, so a stream opened again (on another master, after a
// failover) prints only what was not printed yet. The master sends the stored log from its first
// byte, then live chunks, and the stored log is exactly the live chunks appended in order
// (master/log-stream.ts, under the log lock): a count of the log bytes already printed is the
// offset to skip, whatever the chunk boundaries of the new stream.
import type { LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import { LogStream } from '../protocol/gen/hivemind/v1/common.js';

/**
 * The note a master sends in place of live chunks a slow reader missed (master/log-stream.ts,
 * LiveLogQueue): not in the stored log, while the bytes it stands for are. It must not count as
 * printed log bytes; the bytes it names must. Only a whole chunk of exactly that text counts. A
 * task could print the same text: that only shifts where this task's own output resumes after a
 * failover (it can hide its own later output, which it could do by not printing it), never another
 * task's, and the count is bounded (16 digits, a safe integer).
 */
const SKIPPED_NOTE = /^\n\[hivemind: (\d{1,15}) bytes of live output skipped here: this reader fell behind; `hivemind logs ([^`\s]{1,200})` shows the stored log\]\n$/;

/** The longest note: no chunk longer than this is looked at as one. */
const NOTE_MAX = 400;

export class LogResume {
  /** Bytes of the stored log accounted for: printed, or named by a skipped-bytes note. */
  private offset = 0;
  /** Bytes still to drop from the current stream (what an earlier stream already printed). */
  private toSkip = 0;

  /** Call when a new stream starts: its first `offset` bytes were printed already. */
  restart(): void {
    this.toSkip = this.offset;
  }

  get printedBytes(): number {
    return this.offset;
  }

  /** The part of `c` to print (undefined: all of it was printed before). */
  take(c: LogChunk): LogChunk | undefined {
    const note = c.stream === LogStream.LOG_STREAM_STDERR && c.atMs !== 0 && c.data.length <= NOTE_MAX ? SKIPPED_NOTE.exec(Buffer.from(c.data).toString('latin1')) : null;
    if (note && note[2] === c.taskId) {
      // Only a live stream sends it, after the stored part: nothing of it is left to skip.
      this.offset += Number(note[1]);
      return c;
    }
    if (this.toSkip >= c.data.length) {
      this.toSkip -= c.data.length;
      return undefined;
    }
    const data = this.toSkip > 0 ? c.data.subarray(this.toSkip) : c.data;
    this.toSkip = 0;
    this.offset += data.length;
    return data === c.data ? c : { ...c, data };
  }
}
