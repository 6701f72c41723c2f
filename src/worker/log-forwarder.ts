// Forwards one task's live output to the master in batches without ever blocking the task:
// chunks go into a bounded buffer (oldest dropped first, so the end is what is kept) that a timer
// flushes when a stream to the master is open and not backpressured. When the task ends, close()
// waits (bounded) until the buffered end of the output has reached the master: the end of a log
// is the part people read.
//
// A master that keeps offsets (it answers GetLogOffset) gets every chunk with its byte offset in
// its stream, and what was written stays in the buffer (within the same byte bound) until the
// master is known to hold it: chunks in a dead master's socket or process are not lost, they are
// resent to whichever master the next stream reaches, after asking it how much it holds, and it
// drops whatever part it already has. Such a master also notes in the log where a stream has a
// gap (bytes dropped here for room). An older master gets chunks without offsets, written ones
// are forgotten, and the log says here how many bytes were skipped, as before.
import { LogStream, type LogChunk } from '../protocol/gen/hivemind/v1/common.js';
import { sleep } from '../common/sleep.js';
import type { Clock } from '../common/clock.js';
import type { LogHeld, LogSink } from './master-connection.js';

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

type StreamName = keyof LogHeld;

interface Entry {
  chunk: LogChunk;
  stream: StreamName;
  /** Where the chunk starts in its stream, from this forwarder's first byte (see `base`). */
  offset: number;
  /** Docker's time of the chunk. */
  atNs: bigint;
}

/**
 * How the current sink's master takes chunks: `asking` until it says what it holds, `offsets`
 * when it keeps offsets (resends are safe), `plain` for an older master.
 */
type SinkMode = 'asking' | 'offsets' | 'plain';

/**
 * The entries a master still lacks, given what it holds of each stream (`held`, in this
 * forwarder's offsets): wholly held ones go, a partly held one keeps only its new tail.
 */
export function unheldEntries<E extends { stream: StreamName; offset: number; chunk: LogChunk }>(entries: readonly E[], held: LogHeld): E[] {
  const out: E[] = [];
  for (const e of entries) {
    const h = held[e.stream];
    const end = e.offset + e.chunk.data.length;
    if (end <= h) continue;
    if (e.offset >= h) out.push(e);
    else out.push({ ...e, offset: h, chunk: { ...e.chunk, data: e.chunk.data.subarray(h - e.offset) } });
  }
  return out;
}

export class LogForwarder {
  private entries: Entry[] = [];
  /** How many entries at the head were written on the current sink (kept while unconfirmed). */
  private sent = 0;
  private bufferedBytes = 0;
  /** The offset of the next byte of each stream, from this forwarder's first byte. */
  private readonly next: LogHeld = { stdout: 0, stderr: 0 };
  /**
   * What the attempt's streams held before this forwarder's first byte, learnt from the first
   * master that answered (a worker that restarted and reattached picks its task's log up there).
   */
  private base: LogHeld | undefined;
  private sink: LogSink | undefined;
  private mode: SinkMode = 'plain';
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  /** Bytes dropped unsent because the master was slow or away. */
  droppedBytes = 0;
  /** Of droppedBytes, how many the log already says were skipped (or a master notes as a gap). */
  private reportedDroppedBytes = 0;

  constructor(private readonly opts: LogForwarderOptions) {}

  push(stream: 'stdout' | 'stderr', data: Buffer, atNs = 0n): void {
    if (this.closed || data.length === 0) return;
    this.entries.push({
      chunk: {
        taskId: this.opts.taskId,
        attempt: this.opts.attempt,
        stream: stream === 'stdout' ? LogStream.LOG_STREAM_STDOUT : LogStream.LOG_STREAM_STDERR,
        data,
        atMs: this.opts.clock.now(),
      },
      stream,
      offset: this.next[stream],
      atNs,
    });
    this.next[stream] += data.length;
    this.bufferedBytes += data.length;
    while (this.bufferedBytes > this.opts.maxBufferedBytes && this.entries.length > 1) {
      const old = this.entries.shift()!;
      this.bufferedBytes -= old.chunk.data.length;
      // A written one is probably held; if not, the master sees the gap and notes it.
      if (this.sent > 0) this.sent--;
      else this.droppedBytes += old.chunk.data.length;
    }
    this.schedule();
  }

  /** Sends what the sink takes now; the rest waits for the next push or close. */
  flush(): void {
    if (this.entries.length === 0) return;
    const healthy = this.sink !== undefined && !this.sink.broken;
    // All written and the stream alive: look again at the next tick, in case it breaks.
    if (this.entries.length === this.sent && healthy) return this.schedule();
    if (!healthy) this.openSink();
    const sink = this.sink;
    if (!sink || this.mode === 'asking') return;
    let sentNs: bigint | undefined;
    if (this.mode === 'offsets') this.reportedDroppedBytes = this.droppedBytes;
    else if (this.droppedBytes > this.reportedDroppedBytes && sink.ready) {
      const skipped = this.droppedBytes - this.reportedDroppedBytes;
      const note = `\n[hivemind: ${skipped} bytes of output skipped here: the master did not take them fast enough]\n`;
      if (!sink.write({ taskId: this.opts.taskId, attempt: this.opts.attempt, stream: LogStream.LOG_STREAM_STDERR, data: Buffer.from(note), atMs: this.opts.clock.now() })) return;
      this.reportedDroppedBytes = this.droppedBytes;
    }
    while (this.sent < this.entries.length && sink.ready) {
      const e = this.entries[this.sent]!;
      const chunk = this.mode === 'offsets' ? { ...e.chunk, offset: this.base![e.stream] + e.offset } : e.chunk;
      if (!sink.write(chunk)) break;
      sentNs = e.atNs;
      if (this.mode === 'offsets') this.sent++;
      else {
        // An older master cannot drop a resend: what it was given is forgotten here.
        this.entries.shift();
        this.bufferedBytes -= e.chunk.data.length;
      }
    }
    if (sentNs !== undefined && sentNs > 0n) this.opts.onSent?.(sentNs);
    // Written but unconfirmed ones are looked after too: if their stream breaks while the task is
    // quiet, the next tick resends them to the next master.
    if (this.entries.length > 0) this.schedule();
  }

  /**
   * Sends the rest and half-closes, until the master acknowledged the end (a master that dies
   * then is replaced by the next one reachable, which gets what it lacks). Waits up to
   * closeTimeoutMs in all; gives up at once when no master can be reached (the worker keeps the
   * log's tail). Idempotent.
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    const limit = this.opts.closeTimeoutMs ?? 30_000;
    for (let waited = 0; waited < limit; waited += CLOSE_POLL_MS) {
      this.flush();
      if (!this.sink) break;
      if (this.mode !== 'asking' && this.sent === this.entries.length) {
        const sink = this.sink;
        await sink.end();
        // The ack of the end: the master stored every chunk of this stream.
        if (!sink.broken || this.mode === 'plain') {
          this.forget(this.sent);
          break;
        }
        this.sink = undefined;
        if (this.entries.length === 0) break;
      }
      await sleep(CLOSE_POLL_MS);
    }
    this.droppedBytes += this.entries.slice(this.sent).reduce((n, e) => n + e.chunk.data.length, 0);
    this.entries = [];
    this.sent = 0;
    this.bufferedBytes = 0;
    const sink = this.sink;
    this.sink = undefined;
    if (sink && !sink.broken) await sink.end();
  }

  private schedule(): void {
    if (this.closed) return;
    this.timer ??= setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, this.opts.flushMs);
  }

  /** Drops the first `n` entries (held by the master, or given to one that cannot take them again). */
  private forget(n: number): void {
    for (const e of this.entries.splice(0, n)) this.bufferedBytes -= e.chunk.data.length;
    this.sent = Math.max(0, this.sent - n);
  }

  /** Opens the next sink and asks its master what it holds before anything is written on it. */
  private openSink(): void {
    const sink = this.opts.openSink();
    this.sink = sink;
    if (!sink) return;
    if (!sink.held) {
      this.becomePlain();
      return;
    }
    this.mode = 'asking';
    sink.held().then(
      (held) => {
        if (this.sink !== sink) return;
        if (held === undefined) this.becomePlain();
        else this.resume(held);
        this.flush();
      },
      () => {
        // It cannot answer now: this stream is no use; the next flush opens another.
        if (this.sink !== sink) return;
        this.sink = undefined;
        this.mode = 'plain';
        void sink.end().catch(() => undefined);
        this.schedule();
      },
    );
  }

  private becomePlain(): void {
    // Written on a stream that broke: this master could not drop a resend.
    this.forget(this.sent);
    this.mode = 'plain';
  }

  /** The master holds `held` of the attempt's streams: keep only what it lacks, to be resent. */
  private resume(held: LogHeld): void {
    this.base ??= { ...held };
    const mine = { stdout: held.stdout - this.base.stdout, stderr: held.stderr - this.base.stderr };
    // Written to an older master: gone (the mode was plain, so nothing written is kept).
    const kept = unheldEntries(this.entries, mine);
    this.entries = kept;
    this.bufferedBytes = kept.reduce((n, e) => n + e.chunk.data.length, 0);
    this.sent = 0;
    this.mode = 'offsets';
  }
}
