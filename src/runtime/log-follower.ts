// Follows a task container's output live, and at its end recovers what the live stream missed:
// the stream is read to its end unless it stalls, then Docker's log is read back after the last
// frame seen.
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from '../common/logger.js';
import type { ContainerEngine, LogSink } from './container-engine.js';

/** After the container ended, a log stream that delivered nothing for this long is given up. */
const LOG_STALL_MS = 5000;
/** How much of the end of the output is read back from Docker when the live stream fell behind. */
const END_OF_LOG_BYTES = 1024 * 1024;

export type LogEmit = (stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint) => void;

export class LogFollower {
  private readonly ctl = new AbortController();
  private lastLogAt = Date.now();
  private lastNs = 0n;
  private readonly sink: LogSink;
  private readonly done: Promise<void>;

  /** Starts following container `id`; every frame goes to `emit`. */
  constructor(
    private readonly engine: ContainerEngine,
    private readonly id: string,
    private readonly emit: LogEmit,
    private readonly log: Logger,
  ) {
    const seen = (stream: 'stdout' | 'stderr') => (d: Buffer, atNs: bigint) => {
      // The latest time seen, not the last frame's: Docker stamps each stream when it reads it, so
      // a stderr frame can follow stdout frames stamped after it, and reading back from its time
      // sent those stdout frames twice (a progress flood's last lines were counted twice).
      this.lastLogAt = Date.now();
      if (atNs > this.lastNs) this.lastNs = atNs;
      this.emit(stream, d, atNs);
    };
    this.sink = { stdout: seen('stdout'), stderr: seen('stderr') };
    this.done = this.engine.followLogs(id, this.sink, this.ctl.signal).catch((err: unknown) => {
      if (!this.ctl.signal.aborted) log.warn({ err }, 'log stream failed');
    });
  }

  /** Once the container ended: the rest of its output, as far as Docker still holds it. */
  async finish(): Promise<void> {
    // The log stream ends once Docker has sent all of the output, which after a flood can be
    // seconds after the exit: read it to its end (the part people read), but don't let a stream
    // that stopped moving hold the task.
    const stallTimer = setInterval(() => {
      if (Date.now() - this.lastLogAt > LOG_STALL_MS) this.ctl.abort();
    }, 500);
    await this.done;
    clearInterval(stallTimer);
    // A follower slower than the task loses output when Docker rotates the log under it, the end
    // included: read what Docker still holds after the last frame seen.
    try {
      const end = await this.engine.readLogsSince(this.id, this.lastNs, END_OF_LOG_BYTES);
      if (end.skippedBytes > 0) {
        this.emit('stderr', Buffer.from(`\n[hivemind: ${end.skippedBytes} bytes of output skipped here: the log stream fell behind the task]\n`), this.lastNs + 1n);
      }
      for (const [i, m] of end.messages.entries()) {
        this.sink[m.stream](m.data, m.atNs);
        if (i % 1000 === 999) await nextTurn(); // a flood's end must not stall the reports
      }
    } catch (err) {
      this.log.warn({ err }, 'reading the end of the log failed');
    }
  }
}
