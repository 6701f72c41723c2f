// Follows a task container's output live, and at its end recovers what the live stream missed:
// the stream is read to its end unless it stalls, then the engine's log is read back from the
// oldest frame remembered and matched, in order, against what came live (live-frames.ts).
import { setImmediate as nextTurn } from 'node:timers/promises';
import type { Logger } from '../common/logger.js';
import type { ContainerEngine, LogSink } from './container-engine.js';
import type { LogMessage } from './log-frames.js';
import { LiveFrames } from './live-frames.js';

/** After the container ended, a log stream that delivered nothing for this long is given up. */
const LOG_STALL_MS = 5000;
/** How much of what the live stream missed is passed on at the end (the rest is named as skipped). */
const END_OF_LOG_BYTES = 1024 * 1024;
/** How much of the engine's log is read back at the end: more than it holds (10 MiB by default). */
const READ_BACK_BYTES = 32 * 1024 * 1024;

export type LogEmit = (stream: 'stdout' | 'stderr', data: Buffer, atNs: bigint) => void;

export class LogFollower {
  private readonly ctl = new AbortController();
  private lastLogAt = Date.now();
  /**
   * The frames seen live, per stream: the engine stamps each stream as it reads it, so across
   * stdout and stderr frames need not arrive in time order, but within one they do.
   */
  private readonly live = { stdout: new LiveFrames(), stderr: new LiveFrames() };
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
      this.live[stream].add(atNs, d);
      this.emit(stream, d, atNs);
    };
    this.sink = { stdout: seen('stdout'), stderr: seen('stderr') };
    this.done = this.engine.followLogs(id, this.sink, this.ctl.signal).catch((err: unknown) => {
      if (!this.ctl.signal.aborted) log.warn({ err }, 'log stream failed');
    });
  }

  /**
   * Once the container ended: the rest of its output, as far as the engine still holds it. What
   * the live stream missed after its last frame goes to `emit`. When it also missed frames before
   * that, the engine's log from the oldest frame remembered is returned, in order (its end is the
   * true end of the output, for the tail). Else undefined.
   */
  async finish(): Promise<LogMessage[] | undefined> {
    // The log stream ends once the engine has sent all of the output, which after a flood can be
    // seconds after the exit: read it to its end (the part people read), but don't let a stream
    // that stopped moving hold the task.
    const stallTimer = setInterval(() => {
      if (Date.now() - this.lastLogAt > LOG_STALL_MS) this.ctl.abort();
    }, 500);
    await this.done;
    clearInterval(stallTimer);
    // Read back from the oldest frame remembered of either stream (a stream that sent nothing
    // live is read from there too; with nothing live at all, from the start), and match each
    // stream's frames in order against its live ones: a frame with no live twin was missed. Time
    // alone cannot say: Podman stamps to the second, and its live stream drops frames anywhere.
    const { stdout, stderr } = this.live;
    const since = stdout.size === 0 ? stderr.oldestNs : stderr.size === 0 ? stdout.oldestNs : stdout.oldestNs < stderr.oldestNs ? stdout.oldestNs : stderr.oldestNs;
    let log: LogMessage[];
    try {
      const back = await this.engine.readLogsSince(this.id, since, READ_BACK_BYTES);
      if (back.skippedBytes > 0) this.log.warn({ skippedBytes: back.skippedBytes }, 'the engine held more log than is read back at the end');
      log = back.messages;
    } catch (err) {
      this.log.warn({ err }, 'reading the end of the log failed');
      return undefined;
    }
    const seen = { stdout: stdout.matcher(), stderr: stderr.matcher() };
    // Missed after a stream's last frame seen live (its end) is passed on. Missed before it
    // (Podman's gaps; Docker's rotation under a slow follower) cannot be: each stream is stored
    // as one ordered stream, and frames sent after the live ones would end it with older output
    // than the task's last. The tail (the part an outcome shows) is then taken from the engine's
    // log, in order.
    let middle = 0;
    let middleBytes = 0;
    const missed = { stdout: [] as LogMessage[], stderr: [] as LogMessage[] };
    for (const [i, m] of log.entries()) {
      const pending = missed[m.stream];
      if (!seen[m.stream](m.atNs, m.data)) pending.push(m);
      else if (pending.length > 0) {
        middle += pending.length;
        for (const x of pending.splice(0)) middleBytes += x.data.length;
      }
      if (i % 4096 === 4095) await nextTurn(); // the engine's 10 MiB of small frames is a long walk
    }
    // Both streams' ends, in the log's order.
    const ends = new Set([...missed.stdout, ...missed.stderr]);
    const end = ends.size === 0 ? [] : log.filter((m) => ends.has(m));
    // Only the last END_OF_LOG_BYTES of it are passed on (at least one frame), after a line naming
    // what was skipped (a flood's megabytes would go to the master twice over).
    let keptBytes = 0;
    let from = end.length;
    while (from > 0 && (from === end.length || keptBytes + end[from - 1]!.data.length <= END_OF_LOG_BYTES)) keptBytes += end[--from]!.data.length;
    if (from > 0) {
      const skipped = end.slice(0, from).reduce((n, m) => n + m.data.length, 0);
      this.emit('stderr', Buffer.from(`\n[hivemind: ${skipped} bytes of output skipped here: the log stream fell behind the task]\n`), end[from]?.atNs ?? since);
    }
    for (let i = from; i < end.length; i++) {
      const m = end[i]!;
      this.emit(m.stream, m.data, m.atNs);
      if ((i - from) % 1000 === 999) await nextTurn(); // a flood's end must not stall the reports
    }
    if (middle > 0) this.log.warn({ frames: middle, bytes: middleBytes }, 'the live log stream missed output before its last frame: not in the stored log; the tail is taken from the engine');
    return middle > 0 ? log : undefined;
  }
}
