// The monitor charts' scale decisions (web/assets/chart-scales.js, a browser module loaded here
// from the package's web/ directory): the hour ending now whatever the data, a y range that is
// never empty or NaN, short clock labels.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

type ChartScales = {
  WINDOW_MS: number;
  TIME_INCRS: number[];
  timeWindow(nowMs: number, windowMs?: number): [number, number];
  valueRange(dataMin: number | null, dataMax: number | null, leastTop?: number): [number, number];
  niceCeil(x: number): number;
  clockLabel(sec: number): string;
  firstKept(times: number[], nowMs: number, windowMs?: number): number;
};
const scales = (await import(pathToFileURL(join(process.cwd(), 'web', 'assets', 'chart-scales.js')).href)) as ChartScales;

const NOW = Date.UTC(2026, 11, 6, 22, 30, 15);

test('the x window is the hour ending now, in seconds, with no data, one point or many', () => {
  assert.deepEqual(scales.timeWindow(NOW), [(NOW - 3_600_000) / 1000, NOW / 1000]);
  assert.equal(scales.WINDOW_MS, 3_600_000);
  assert.deepEqual(scales.timeWindow(NOW, 60_000), [(NOW - 60_000) / 1000, NOW / 1000]);
});

test('tick steps are whole minutes, growing, so a narrow chart takes a longer step', () => {
  assert.ok(scales.TIME_INCRS.every((s, i) => s % 60 === 0 && (i === 0 || s > scales.TIME_INCRS[i - 1]!)));
  assert.ok(scales.TIME_INCRS.at(-1)! >= 3600, 'one step can span the whole window');
});

test('the y range: from 0, a round top above the highest value, never empty or NaN', () => {
  assert.deepEqual(scales.valueRange(null, null), [0, 1], 'no data');
  assert.deepEqual(scales.valueRange(null, null, 100), [0, 100], 'no data, a percentage');
  assert.deepEqual(scales.valueRange(0, 0), [0, 1], 'only zeros');
  assert.deepEqual(scales.valueRange(0.5, 0.5), [0, 0.6], 'one point');
  assert.deepEqual(scales.valueRange(20, 20, 100), [0, 100], 'one percentage');
  assert.deepEqual(scales.valueRange(20, 130, 100), [0, 150], 'over the least top');
  assert.deepEqual(scales.valueRange(2 ** 30, 2 ** 30), [0, 1.2e9], 'one GiB');
  assert.deepEqual(scales.valueRange(-2, 8), [-2, 10], 'a negative value is kept in view');
  for (const [lo, hi] of [[Number.NaN, Number.NaN], [Infinity, -Infinity], [undefined, undefined]] as const) {
    const [a, b] = scales.valueRange(lo as unknown as number, hi as unknown as number);
    assert.ok(Number.isFinite(a) && Number.isFinite(b) && b > a, `${lo}..${hi} → [${a}, ${b}]`);
  }
});

test('niceCeil: the next round number', () => {
  assert.equal(scales.niceCeil(1), 1);
  assert.equal(scales.niceCeil(1.01), 1.2);
  assert.equal(scales.niceCeil(0.55), 0.6);
  assert.equal(scales.niceCeil(7), 8);
  assert.equal(scales.niceCeil(9), 10);
  assert.equal(scales.niceCeil(3300), 4000);
});

test('a time label is the local "HH:MM", one short line', () => {
  const d = new Date(NOW);
  const want = `${String(d.getHours()).padStart(2, '0')}:${String(d.getMinutes()).padStart(2, '0')}`;
  assert.equal(scales.clockLabel(NOW / 1000), want);
  assert.match(scales.clockLabel(0), /^\d\d:\d\d$/);
});

test('points older than the window are dropped, but for one that carries the line to the edge', () => {
  const s = NOW / 1000;
  assert.equal(scales.firstKept([], NOW), 0);
  assert.equal(scales.firstKept([s - 10, s], NOW), 0);
  assert.equal(scales.firstKept([s - 7200, s - 5000, s - 3000, s], NOW), 1);
  assert.equal(scales.firstKept([s - 7200, s - 5000], NOW), 1, 'all old: the newest stays');
});
