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
  /**
   * Docker's time of the latest frame seen, per stream: Docker stamps each stream as it reads it,
   * so across stdout and stderr frames need not arrive in time order, but within one they do.
   */
  private readonly lastNs = { stdout: 0n, stderr: 0n };
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
      this.lastLogAt = Date.now();
      if (atNs > this.lastNs[stream]) this.lastNs[stream] = atNs;
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
    // included: read what Docker still holds after the earlier of the two streams' latest frames,
    // and pass on of each stream only what is newer than its own latest (a stderr frame may
    // arrive after stdout frames stamped later: read back from the last frame's time, those went
    // out twice; from the latest time, a stderr frame stamped before it would be lost). A stream
    // that sent nothing live is read from the other's latest frame: from its start would read
    // the whole log back (and call the part past the cap skipped).
    const { stdout, stderr } = this.lastNs;
    const since = stdout === 0n ? stderr : stderr === 0n ? stdout : stdout < stderr ? stdout : stderr;
    try {
      const end = await this.engine.readLogsSince(this.id, since, END_OF_LOG_BYTES);
      if (end.skippedBytes > 0) {
        this.emit('stderr', Buffer.from(`\n[hivemind: ${end.skippedBytes} bytes of output skipped here: the log stream fell behind the task]\n`), since + 1n);
      }
      for (const [i, m] of end.messages.entries()) {
        if (m.atNs <= this.lastNs[m.stream]) continue;
        this.sink[m.stream](m.data, m.atNs);
        if (i % 1000 === 999) await nextTurn(); // a flood's end must not stall the reports
      }
    } catch (err) {
      this.log.warn({ err }, 'reading the end of the log failed');
    }
  }
}
