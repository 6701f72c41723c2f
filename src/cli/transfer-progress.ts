// The live line of a long transfer (a task's input upload, a result download, `data put`/`get`):
// bytes done of total and the rate, drawn on the status line, so nothing at all in a pipe.
import { formatBytes, formatDuration } from '../common/units.js';
import { progressBar, statusLine, type StatusStream } from './status-line.js';

/** Rate over the whole transfer so far; 0 until some time has passed (no division by ~0). */
export function transferRate(bytes: number, elapsedMs: number): number {
  return elapsedMs >= 1 ? (bytes * 1000) / elapsedMs : 0;
}

/**
 * `upload input  [####......]  42%  4.2 MiB / 10.0 MiB  1.5 MiB/s  4s left`; without a known total,
 * bytes and rate only. `resumedFrom` counts as done but not in the rate (it was not sent now).
 */
export function formatTransfer(label: string, done: number, total: number | undefined, elapsedMs: number, resumedFrom = 0): string {
  const rate = transferRate(Math.max(0, done - resumedFrom), elapsedMs);
  const parts = [label];
  if (total !== undefined && total > 0) parts.push(progressBar(done / total), `${formatBytes(done)} / ${formatBytes(total)}`);
  else parts.push(formatBytes(done));
  if (rate > 0) {
    parts.push(`${formatBytes(rate)}/s`);
    if (total !== undefined && total > done) parts.push(`${formatDuration(((total - done) / rate) * 1000)} left`);
  }
  return parts.join('  ');
}

export interface TransferProgress {
  /** Bytes done so far (of `total`, when the transfer knows it by now). */
  update(done: number, total?: number): void;
  /** Clears the line (the command prints its own summary). */
  done(): void;
}

export function transferProgress(stream: StatusStream, label: string, total?: number, now: () => number = Date.now): TransferProgress {
  const line = statusLine(stream, now);
  const start = now();
  let first: number | undefined;
  let knownTotal = total;
  return {
    update(done, t) {
      if (t !== undefined) knownTotal = t;
      // The first report may start past 0 (a resumed transfer): the rate counts what moves from here.
      first ??= done;
      line.update(formatTransfer(label, done, knownTotal, now() - start, first), done === knownTotal);
    },
    done: () => line.done(),
  };
}
