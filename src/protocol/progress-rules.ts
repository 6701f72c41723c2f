// What a task may say about its own progress (docs/progress.md): the line format and its bounds, in
// one place, so the node that reads the lines and the master that stores what a node forwards hold
// them to the same rules (the master never trusts the node's reading).
import type { TaskProgress } from './gen/hivemind/v1/common.js';

/** A progress line starts with this, then a space or tab, then one JSON object. */
export const PROGRESS_PREFIX = 'HIVEMIND_PROGRESS';
/** A longer line (without its line end) is not a progress line; one starting with the prefix is refused. */
export const MAX_PROGRESS_LINE_BYTES = 4096;
/** Characters (code points) of a progress message. */
export const MAX_PROGRESS_MESSAGE_CHARS = 256;
/** Metrics in one report. */
export const MAX_PROGRESS_METRICS = 16;
/** What a metric may be called: short, printable, no spaces (it becomes a column or a label). */
export const PROGRESS_METRIC_NAME = /^[A-Za-z0-9_.:/-]{1,64}$/;
/** The master hears a task's progress at most this often (the latest wins). */
export const PROGRESS_INTERVAL_MS = 1_000;

/** A report as a task gave it, checked. */
export interface ProgressReport {
  fraction?: number | undefined;
  message: string;
  metrics: Map<string, number>;
}

export type ProgressParse = { ok: true; report: ProgressReport } | { ok: false; reason: string };

// C0 controls, DEL and C1 controls: they would move a terminal's cursor or forge lines in a listing.
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u001f\u007f-\u009f]+/g;

const refuse = (reason: string): ProgressParse => ({ ok: false, reason });

/**
 * The JSON after the prefix, checked. Unknown keys are ignored (a newer task may say more); a
 * message's control characters (a tab, a stray escape sequence) become spaces rather than costing
 * the whole report; everything else out of bounds refuses the line.
 */
export function parseProgressJson(text: string): ProgressParse {
  if (Buffer.byteLength(text) > MAX_PROGRESS_LINE_BYTES) return refuse(`the JSON is over ${MAX_PROGRESS_LINE_BYTES} bytes`);
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return refuse('not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return refuse('not a JSON object');
  const o = v as Record<string, unknown>;
  let fraction: number | undefined;
  if (o.fraction !== undefined && o.fraction !== null) {
    if (typeof o.fraction !== 'number' || !(o.fraction >= 0 && o.fraction <= 1)) return refuse('fraction is not a number from 0 to 1');
    fraction = o.fraction;
  }
  let message = '';
  if (o.message !== undefined && o.message !== null) {
    if (typeof o.message !== 'string') return refuse('message is not a string');
    message = o.message.replace(CONTROLS, ' ');
    if (codePoints(message) > MAX_PROGRESS_MESSAGE_CHARS) return refuse(`message is over ${MAX_PROGRESS_MESSAGE_CHARS} characters`);
  }
  const metrics = new Map<string, number>();
  if (o.metrics !== undefined && o.metrics !== null) {
    if (typeof o.metrics !== 'object' || Array.isArray(o.metrics)) return refuse('metrics is not a JSON object');
    const entries = Object.entries(o.metrics as Record<string, unknown>);
    if (entries.length > MAX_PROGRESS_METRICS) return refuse(`${entries.length} metrics, over the limit of ${MAX_PROGRESS_METRICS}`);
    for (const [name, value] of entries) {
      if (!PROGRESS_METRIC_NAME.test(name)) return refuse(`metric name ${JSON.stringify(name.slice(0, 70))} is not 1..64 of A-Z a-z 0-9 _ . : / -`);
      if (typeof value !== 'number' || !Number.isFinite(value)) return refuse(`metric ${name} is not a finite number`);
      metrics.set(name, value);
    }
  }
  return { ok: true, report: { ...(fraction !== undefined ? { fraction } : {}), message, metrics } };
}

/**
 * Why a node's forwarded progress breaks the rules, or undefined when it keeps them. The master
 * asks this of every TaskProgress before storing it: a node is not trusted to have checked.
 */
export function progressViolation(p: TaskProgress): string | undefined {
  if (p.fraction !== undefined && !(p.fraction >= 0 && p.fraction <= 1)) return `progress.fraction: ${p.fraction} is not from 0 to 1`;
  if (codePoints(p.message) > MAX_PROGRESS_MESSAGE_CHARS) return `progress.message: over ${MAX_PROGRESS_MESSAGE_CHARS} characters`;
  if (CONTROL.test(p.message)) return 'progress.message: holds control characters';
  if (p.metrics.size > MAX_PROGRESS_METRICS) return `progress.metrics: ${p.metrics.size} metrics, over the limit of ${MAX_PROGRESS_METRICS}`;
  for (const [name, value] of p.metrics) {
    if (!PROGRESS_METRIC_NAME.test(name)) return `progress.metrics: the name ${JSON.stringify(name.slice(0, 70))} is not 1..64 of A-Z a-z 0-9 _ . : / -`;
    if (!Number.isFinite(value)) return `progress.metrics.${name}: ${value} is not a finite number`;
  }
  for (const [field, n] of [['at_ms', p.atMs], ['updates', p.updates], ['rejected', p.rejected]] as const) {
    if (!Number.isSafeInteger(n) || n < 0) return `progress.${field}: ${n} is not a count`;
  }
  if (p.rejected > p.updates) return `progress.rejected: ${p.rejected} is more than the ${p.updates} lines read`;
  return undefined;
}

function codePoints(s: string): number {
  // Cheap bound first: a string of at most N UTF-16 units has at most N code points.
  if (s.length <= MAX_PROGRESS_MESSAGE_CHARS) return s.length;
  let n = 0;
  for (const _ of s) n++;
  return n;
}
