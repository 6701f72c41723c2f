// The monitor charts' scale decisions, pure so that they are unit-tested in Node as well as loaded
// by the page (test/unit/chart-scales.test.ts). uPlot's own auto-ranging pads a single point's
// zero-width x range into years and formats ticks as multi-line dates that collide on a narrow
// chart; these choose the window, the value range and the tick labels instead.

/** Every time chart shows this much, ending now. */
export const WINDOW_MS = 3600_000;

/**
 * Tick steps in seconds, all whole minutes: uPlot takes the smallest one whose ticks stand at
 * least TICK_SPACE_PX apart, so a narrow chart gets fewer ticks rather than colliding labels.
 */
export const TIME_INCRS = [60, 120, 300, 600, 900, 1200, 1800, 3600];

/**
 * The least distance between two time ticks, in CSS px: an "HH:MM" label is about 32 px wide in
 * the axis font, so neighbours keep a gap of about a label's width.
 */
export const TICK_SPACE_PX = 60;

/**
 * The x range in uPlot's seconds: the hour ending at `nowMs`, whatever the data. A fixed window
 * (not one from the first sample) because the page says "last hour": the axis reads the same on a
 * fresh node as on an old one, a new node's few points sit at the right edge where "now" is, and a
 * single point never makes a zero-width range to pad.
 */
export function timeWindow(nowMs, windowMs = WINDOW_MS) {
  return [(nowMs - windowMs) / 1000, nowMs / 1000];
}

/**
 * The y range for values that are never negative (percentages, bytes, rates, scores, watts):
 * from 0 to a round number at least a tenth above the highest value (so the top has a gridline
 * and the highest point is not on the frame), and never below `leastTop` (a percentage's 100, or
 * a top whose half-way tick still formats as a distinct label: "1 W" twice is what [0, 1] gives
 * for watts). Without data, or with only zeros, [0, leastTop or 1]: never NaN, never empty.
 */
export function valueRange(dataMin, dataMax, leastTop) {
  const lo = Number.isFinite(dataMin) ? Math.min(0, dataMin) : 0;
  const top = Number.isFinite(dataMax) ? dataMax : lo;
  if (leastTop !== undefined && top <= leastTop) return [lo, leastTop];
  if (top <= lo) return [lo, lo + 1];
  return [lo, lo + niceCeil((top - lo) * 1.1)];
}

const NICE = [1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10];
/** The least of 1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is at least `x` (> 0). */
export function niceCeil(x) {
  const e = Math.floor(Math.log10(x));
  // Divided by a power of ten below 1 rather than times 0.1^n, which gives 0.6000000000000001.
  const scaled = (m) => (e >= 0 ? m * 10 ** e : m / 10 ** -e);
  return scaled(NICE.find((n) => scaled(n) >= x * (1 - 1e-12)) ?? 10);
}

const two = (n) => String(n).padStart(2, '0');

/** A time tick's label: the local wall-clock "HH:MM" of uPlot's seconds (24 h, short, one line). */
export function clockLabel(sec) {
  const d = new Date(sec * 1000);
  return `${two(d.getHours())}:${two(d.getMinutes())}`;
}

/** Points older than the window (and one before it, so the line enters from the left edge) are dropped. */
export function firstKept(times, nowMs, windowMs = WINDOW_MS) {
  const from = (nowMs - windowMs) / 1000;
  let i = 0;
  while (i < times.length && times[i] < from) i++;
  return Math.max(0, i - 1);
}
