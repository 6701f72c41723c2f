// Forwards one task's live output to the master in batches without ever blocking the task:
// chunks go into a bounded buffer (oldest dropped first) that a timer flushes when a stream
// to the master is open and not backpressured.
import { LogStream, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
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
}

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

  /** Final flush and half-close. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.flush();
    this.closed = true;
    this.buffer = [];
    this.times = [];
    this.bufferedBytes = 0;
    await this.sink?.end();
  }
}
