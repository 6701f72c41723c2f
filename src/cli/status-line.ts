// One line of live status on a terminal (a transfer's bytes, a task's progress), redrawn in place,
// at most ten times a second. On anything but a terminal it writes nothing at all: a pipe or a log
// file gets the command's result, not a stream of carriage returns.

/** What a status line draws on: a terminal's stream (stderr, normally). */
export interface StatusStream {
  isTTY?: boolean;
  columns?: number;
  write(text: string): boolean;
}

export interface StatusLine {
  /** Shows `text` (cut to the terminal's width); skipped when the last draw was under 100 ms ago, unless `force`. */
  update(text: string, force?: boolean): void;
  /** Clears the line, and leaves `final` in its place when given. Later updates are ignored. */
  done(final?: string): void;
}

const MIN_REDRAW_MS = 100;
const CLEAR = '\r\x1b[2K';

export function statusLine(stream: StatusStream, now: () => number = Date.now): StatusLine {
  if (!stream.isTTY) return { update: () => undefined, done: () => undefined };
  let drawnAt = -Infinity;
  let shown = false;
  let finished = false;
  return {
    update(text, force = false) {
      if (finished) return;
      const t = now();
      if (!force && t - drawnAt < MIN_REDRAW_MS) return;
      drawnAt = t;
      shown = true;
      stream.write(CLEAR + fitWidth(text, (stream.columns ?? 80) - 1));
    },
    done(final) {
      if (finished) return;
      finished = true;
      if (shown) stream.write(CLEAR);
      if (final !== undefined) stream.write(`${final}\n`);
    },
  };
}

/** `[########............]  42%`: a fraction (clamped to 0..1) as a bar of `width` cells and a percentage. */
export function progressBar(fraction: number, width = 20): string {
  const f = Number.isFinite(fraction) ? Math.min(1, Math.max(0, fraction)) : 0;
  const filled = Math.floor(f * width);
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}%`;
}

function fitWidth(text: string, columns: number): string {
  const single = text.replace(/[\r\n]+/g, ' ');
  return single.length <= columns ? single : `${single.slice(0, Math.max(0, columns - 1))}…`;
}
