// The client's terminal during `hivemind exec -t`: raw mode (every key, Ctrl-C and Ctrl-D
// included, goes to the remote side as bytes), the window size now and on every change, and the
// terminal's mode restored on every way out (normal end, error, signal, process exit).
import { EXEC_BOUNDS } from '../protocol/exec-rules.js';
import type { TerminalSize } from '../protocol/gen/hivemind/v1/common.js';

/** The window size a terminal reports, within the protocol's bounds, 1..1000 (80×24 when it says nothing). */
export function terminalSize(out: { columns?: number; rows?: number }): TerminalSize {
  const side = (v: number | undefined, dflt: number) => (v && Number.isFinite(v) ? Math.min(EXEC_BOUNDS.maxTerminalSide, Math.max(1, Math.floor(v))) : dflt);
  return { cols: side(out.columns, 80), rows: side(out.rows, 24) };
}

interface TtyIn {
  isTTY?: boolean;
  isRaw?: boolean;
  setRawMode?(mode: boolean): unknown;
}

interface TtyOut {
  columns?: number;
  rows?: number;
  on(event: 'resize', f: () => void): unknown;
  off(event: 'resize', f: () => void): unknown;
}

export interface ProcessHooks {
  on(event: 'SIGWINCH' | 'exit', f: () => void): unknown;
  off(event: 'SIGWINCH' | 'exit', f: () => void): unknown;
}

export class ExecTerminal {
  private restored = false;
  private readonly wasRaw: boolean;
  private onSize: ((s: TerminalSize) => void) | undefined;
  private last: TerminalSize;

  constructor(private readonly input: TtyIn, private readonly output: TtyOut, private readonly proc: ProcessHooks, raw: boolean) {
    this.wasRaw = Boolean(input.isRaw);
    this.last = terminalSize(output);
    if (raw && input.setRawMode) input.setRawMode(true);
    output.on('resize', this.changed);
    proc.on('SIGWINCH', this.changed);
    // The last resort: a process.exit() from anywhere still leaves the terminal usable.
    proc.on('exit', this.restore);
  }

  get size(): TerminalSize {
    return this.last;
  }

  /**
   * Calls `send` with each new window size from now on. The start carried the size of the moment
   * it was made (`size`, read before the session opened): a window resized while the session was
   * opening is sent at once, not lost.
   */
  watch(send: (s: TerminalSize) => void, startedWith: TerminalSize): void {
    this.onSize = send;
    if (this.last.cols !== startedWith.cols || this.last.rows !== startedWith.rows) send(this.last);
  }

  private readonly changed = (): void => {
    const s = terminalSize(this.output);
    if (s.cols === this.last.cols && s.rows === this.last.rows) return;
    this.last = s;
    this.onSize?.(s);
  };

  /** Idempotent: the terminal's mode back as it was, listeners gone. */
  readonly restore = (): void => {
    if (this.restored) return;
    this.restored = true;
    this.output.off('resize', this.changed);
    this.proc.off('SIGWINCH', this.changed);
    this.proc.off('exit', this.restore);
    if (this.input.setRawMode && this.input.isRaw !== this.wasRaw) this.input.setRawMode(this.wasRaw);
  };
}
