// Finds a task's progress lines (docs/progress.md) in the output the node already follows: one line
// buffer per stream, bounded, so a task that prints without end or one endless line costs the node
// a fixed amount of memory. The lines stay in the log; this only reads them.
import { MAX_PROGRESS_LINE_BYTES, PROGRESS_PREFIX, parseProgressJson, type ProgressReport } from '../protocol/progress-rules.js';

const PREFIX = Buffer.from(PROGRESS_PREFIX);
const NL = 0x0a;
const CR = 0x0d;

/**
 * Where a stream stands in its current line. `open`: too short yet to tell; `progress`: starts
 * with the prefix, collected; `other`: not a progress line, skipped to its end; `oversized`: a
 * progress line past the bound, skipped to its end and refused there.
 */
type LineMode = 'open' | 'progress' | 'other' | 'oversized';

class StreamLine {
  mode: LineMode = 'open';
  parts: Buffer[] = [];
  length = 0;

  reset(): void {
    this.mode = 'open';
    this.parts = [];
    this.length = 0;
  }

  bytes(): Buffer {
    return this.parts.length === 1 ? this.parts[0]! : Buffer.concat(this.parts, this.length);
  }
}

/** What the scanner saw: counts of progress lines and the latest accepted report. */
export interface ProgressTally {
  /** Progress lines read (accepted or refused). */
  updates: number;
  /** Of those, refused: malformed, out of bounds, or over the line bound. */
  rejected: number;
  /** The latest accepted report, with the clock's time it was read. */
  latest?: { report: ProgressReport; atMs: number } | undefined;
}

export class ProgressScanner implements ProgressTally {
  updates = 0;
  rejected = 0;
  latest: { report: ProgressReport; atMs: number } | undefined;
  private readonly lines = { stdout: new StreamLine(), stderr: new StreamLine() };

  /** `now` is read once per accepted line; `onLine` hears every progress line (accepted or not). */
  constructor(
    private readonly now: () => number,
    private readonly onLine: (accepted: boolean, reason?: string) => void = () => undefined,
  ) {}

  /** Reads one chunk of a stream's output; lines may be split across chunks anyhow. */
  push(stream: 'stdout' | 'stderr', data: Buffer): void {
    const line = this.lines[stream];
    let pos = 0;
    while (pos < data.length) {
      const nl = data.indexOf(NL, pos);
      const end = nl === -1 ? data.length : nl;
      if (line.mode !== 'other' && line.mode !== 'oversized') this.collect(line, data.subarray(pos, end));
      if (nl === -1) return;
      this.endLine(line);
      pos = nl + 1;
    }
  }

  private collect(line: StreamLine, seg: Buffer): void {
    if (seg.length === 0) return;
    if (line.length + seg.length > MAX_PROGRESS_LINE_BYTES + 1) {
      // +1: the CR of a CRLF line end is not part of the line's length.
      line.mode = line.mode === 'progress' || this.startsProgress(line, seg.subarray(0, PREFIX.length + 1)) === true ? 'oversized' : 'other';
      line.parts = [];
      line.length = 0;
      return;
    }
    line.parts.push(seg);
    line.length += seg.length;
    if (line.mode === 'open') {
      const starts = this.startsProgress(line);
      if (starts !== undefined) {
        line.mode = starts ? 'progress' : 'other';
        if (!starts) {
          line.parts = [];
          line.length = 0;
        }
      }
    }
  }

  /** Whether the line (plus `more`) starts with the prefix and a separator; undefined: too short to tell. */
  private startsProgress(line: StreamLine, more?: Buffer): boolean | undefined {
    const head = more ? Buffer.concat([...line.parts, more]) : line.bytes();
    const n = Math.min(head.length, PREFIX.length);
    if (head.compare(PREFIX, 0, n, 0, n) !== 0) return false;
    if (head.length <= PREFIX.length) return undefined;
    const sep = head[PREFIX.length];
    return sep === 0x20 || sep === 0x09 || sep === CR;
  }

  private endLine(line: StreamLine): void {
    const mode = line.mode;
    let bytes = mode === 'progress' || mode === 'open' ? line.bytes() : undefined;
    line.reset();
    if (mode === 'other') return;
    if (mode === 'oversized') return this.refuse(`the line is over ${MAX_PROGRESS_LINE_BYTES} bytes`);
    if (bytes!.length > 0 && bytes![bytes!.length - 1] === CR) bytes = bytes!.subarray(0, bytes!.length - 1);
    // An open line ended before it could be told apart: a progress line only if it is the bare prefix.
    if (mode === 'open' && !bytes!.equals(PREFIX)) return;
    if (bytes!.length > MAX_PROGRESS_LINE_BYTES) return this.refuse(`the line is over ${MAX_PROGRESS_LINE_BYTES} bytes`);
    const json = bytes!.subarray(PREFIX.length).toString('utf8').trim();
    if (json === '') return this.refuse('no JSON after the prefix');
    const parsed = parseProgressJson(json);
    if (!parsed.ok) return this.refuse(parsed.reason);
    this.updates++;
    this.latest = { report: parsed.report, atMs: this.now() };
    this.onLine(true);
  }

  private refuse(reason: string): void {
    this.updates++;
    this.rejected++;
    this.onLine(false, reason);
  }
}
