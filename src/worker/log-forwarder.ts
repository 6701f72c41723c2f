// Forwards one task's live output to the master in batches without ever blocking the task:
// chunks go into a bounded buffer (oldest dropped first, so the end is what is kept) that a timer
// flushes when a stream to the master is open and not backpressured. Where output was dropped,
// the log says how much. When the task ends, close() waits (bounded) until the buffered end of the
// output has reached the master: the end of a log is the part people read.
import { LogStream, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import { sleep } from '../common/sleep.js';
import type { Clock } from '../common/clock.js';
import type { LogSink } from './master-connection.js';

export interface LogForwarderOptions {
  taskId: string;
  attempt: number;
  clock: Clock;
  flushMs: number;
  maxBufferedBytes: number;
  /** Opens a sink when the master is reachable; undefined when it is not. */
  openSink: () => LogSink | undefined;
  /** After a flush wrote something: Docker's time (ns) of the last chunk written. */
  onSent?: (atNs: bigint) => void;
  /** How long close() waits for a backpressured stream to take the rest. Default 30 s. */
  closeTimeoutMs?: number;
}

/** How often close() offers the rest to a backpressured stream. */
const CLOSE_POLL_MS = 10;

export class LogForwarder {
  private buffer: LogChunk[] = [];
  /** Docker's time of each buffered chunk, in step with `buffer`. */
  private times: bigint[] = [];
  private bufferedBytes = 0;
  private sink: LogSink | undefined;
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Bytes dropped because the master was slow or away (reported in the task's log). */
  droppedBytes = 0;
  /** Of droppedBytes, how many the log already says were skipped. */
  private reportedDroppedBytes = 0;

  constructor(private readonly opts: LogForwarderOptions) {}

  push(stream: 'stdout' | 'stderr', data: Buffer, atNs = 0n): void {
    if (this.closed || data.length === 0) return;
    this.times.push(atNs);
    this.buffer.push({
      taskId: this.opts.taskId,
      attempt: this.opts.attempt,
      stream: stream === 'stdout' ? LogStream.LOG_STREAM_STDOUT : LogStream.LOG_STREAM_STDERR,
      data,
      atMs: this.opts.clock.now(),
    });
    this.bufferedBytes += data.length;
    while (this.bufferedBytes > this.opts.maxBufferedBytes && this.buffer.length > 1) {
      const old = this.buffer.shift()!;
      this.times.shift();
      this.bufferedBytes -= old.data.length;
      this.droppedBytes += old.data.length;
    }
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.opts.flushMs);
  }

  /** Sends what the sink takes now; the rest waits for the next push or close. */
  flush(): void {
    if (this.buffer.length === 0) return;
    if (!this.sink || this.sink.broken) this.sink = this.opts.openSink();
    if (!this.sink) return;
    let sentNs: bigint | undefined;
    if (this.droppedBytes > this.reportedDroppedBytes && this.sink.ready) {
      const skipped = this.droppedBytes - this.reportedDroppedBytes;
      const note = `\n[hivemind: ${skipped} bytes of output skipped here: the master did not take them fast enough]\n`;
      if (!this.sink.write({ taskId: this.opts.taskId, attempt: this.opts.attempt, stream: LogStream.LOG_STREAM_STDERR, data: Buffer.from(note), atMs: this.opts.clock.now() })) return;
      this.reportedDroppedBytes = this.droppedBytes;
    }
    while (this.buffer.length > 0 && this.sink.ready) {
      const chunk = this.buffer[0]!;
      if (!this.sink.write(chunk)) break;
      this.buffer.shift();
      sentNs = this.times.shift();
      this.bufferedBytes -= chunk.data.length;
    }
    if (sentNs !== undefined && sentNs > 0n) this.opts.onSent?.(sentNs);
    if (this.buffer.length > 0 && !this.closed) {
      this.timer ??= setTimeout(() => {
        this.timer = undefined;
        this.flush();
      }, this.opts.flushMs);
    }
  }

  /**
   * Sends the rest and half-closes. Waits up to closeTimeoutMs while the stream is backpressured;
   * gives up at once when the master cannot be reached (the worker keeps the log's tail). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const limit = this.opts.closeTimeoutMs ?? 30_000;
    for (let waited = 0; ; waited += CLOSE_POLL_MS) {
      this.flush();
      if (this.buffer.length === 0 || !this.sink || waited >= limit) break;
      await sleep(CLOSE_POLL_MS);
    }
    this.droppedBytes += this.bufferedBytes;
    this.buffer = [];
    this.times = [];
    this.bufferedBytes = 0;
    await this.sink?.end();
  }
}
