// The monitor's charts (uPlot, loaded as a global by monitor.html): CPU, memory, disk, network,
// the contribution score and four per GPU, each over the hour ending now (chart-scales.js says why).
import { $, el, fmtBytes } from './monitor-dom.js';
import { TICK_SPACE_PX, TIME_INCRS, clockLabel, firstKept, timeWindow, valueRange } from './chart-scales.js';

// The x axis's font, set rather than uPlot's default so that the labels' drawn width can be measured.
const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';
const ADVANCE_MS = 10_000; // how often an idle chart's window moves on to "now"

const measure = document.createElement('canvas').getContext('2d');
measure.font = AXIS_FONT;

/**
 * What the chart drew, on its box's data-axes (ranges in ms and values, x tick labels with their
 * left edge and width in CSS px within the plot area, y tick labels) and data-points: the browser
 * test reads it.
 */
function recordAxes(u, box, splits, yLabels) {
  const labels = splits.map((s) => {
    const label = clockLabel(s);
    const width = measure.measureText(label).width;
    return { label, left: u.valToPos(s, 'x') - width / 2, width };
  });
  box.dataset.points = String(u.data[0].length);
  box.dataset.axes = JSON.stringify({
    xMin: u.scales.x.min * 1000,
    xMax: u.scales.x.max * 1000,
    yMin: u.scales.y.min,
    yMax: u.scales.y.max,
    ticks: labels,
    yLabels,
    plotLeft: 0,
    plotWidth: u.bbox.width / uPlot.pxRatio,
  });
}

const charts = new Map(); // id -> { plot, data, box }
/** `leastTop`: the y axis's top while the values stay under it (valueRange). */
function makeChart(containerId, title, series, fmt, leastTop) {
  const box = $(containerId);
  box.replaceChildren(el('div', { class: 'chart-title', text: title }));
  const data = [[], ...series.map(() => [])];
  const width = Math.max(280, box.clientWidth || 320);
  let splits = [];
  let yLabels = [];
  const plot = new uPlot(
    {
      width,
      height: 160,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: {
        x: { time: true, range: () => timeWindow(Date.now()) },
        y: { range: (_u, min, max) => valueRange(min, max, leastTop) },
      },
      axes: [
        {
          font: AXIS_FONT,
          space: TICK_SPACE_PX,
          incrs: TIME_INCRS,
          values: (_u, ticks) => {
            splits = ticks;
            return ticks.map(clockLabel);
          },
        },
        {
          values: (_u, ticks) => {
            yLabels = ticks.map(fmt);
            return yLabels;
          },
          size: 84,
        },
      ],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, value: (_u, v) => (v == null ? '–' : fmt(v)) }))],
      hooks: { draw: [(u) => recordAxes(u, box, splits, yLabels)] },
    },
    data,
    box,
  );
  const c = { plot, data, box };
  charts.set(containerId, c);
  return c;
}
function pushPoint(c, atMs, values) {
  c.data[0].push(atMs / 1000);
  values.forEach((v, i) => c.data[i + 1].push(v));
  trim(c);
}
function trim(c) {
  const from = firstKept(c.data[0], Date.now());
  if (from > 0) for (const col of c.data) col.splice(0, from);
}
function redraw(c) {
  trim(c);
  c.plot.setData(c.data);
  // Without data uPlot leaves the x scale alone: set the window explicitly.
  if (c.data[0].length === 0) {
    const [min, max] = timeWindow(Date.now());
    c.plot.setScale('x', { min, max });
  }
}
window.addEventListener('resize', () => {
  for (const c of charts.values()) c.plot.setSize({ width: Math.max(280, c.box.clientWidth), height: 160 });
});

// Least y tops: whole-number labels (°C, W) need a top of several units, bytes one of a KiB to
// avoid "0.5 B"; a percentage goes to 100.
const KIB = 1024;
const pct = (v) => `${Number(v).toFixed(0)} %`;
const bytes = (v) => fmtBytes(Number(v));
const rate = (v) => `${fmtBytes(Number(v))}/s`;
let cpuChart, memChart, diskChart, netChart, contribChart;
const gpuCharts = new Map(); // index -> { util, mem, temp, power }

export function initCharts() {
  cpuChart = makeChart('chart-cpu', 'CPU', [{ label: 'CPU', color: '#2456c7' }], pct, 100);
  memChart = makeChart('chart-memory', 'Memory', [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes, KIB);
  diskChart = makeChart('chart-disk', 'Disk (data dir)', [{ label: 'used', color: '#a05a00' }, { label: 'total', color: '#b9bfcc' }], bytes, KIB);
  netChart = makeChart('chart-network', 'Network', [{ label: 'in', color: '#1f7a4d' }, { label: 'out', color: '#d12771' }], rate, KIB);
  contribChart = makeChart('chart-contribution', 'Score per interval', [{ label: 'score', color: '#1f7a4d' }], (v) => Number(v).toFixed(1));
  // The window moves on with the clock even when no point comes (a node that stopped reporting).
  setInterval(redrawAll, ADVANCE_MS);
}

function gpuChartsFor(index) {
  let g = gpuCharts.get(index);
  if (g) return g;
  const ids = ['util', 'mem', 'temp', 'power'].map((k) => `chart-gpu${index}-${k}`);
  for (const id of ids) $('gpu-charts').append(el('div', { class: 'chart', id, 'data-testid': id }));
  g = {
    util: makeChart(ids[0], `GPU ${index} utilisation`, [{ label: 'util', color: '#2456c7' }], pct, 100),
    mem: makeChart(ids[1], `GPU ${index} VRAM`, [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes, KIB),
    temp: makeChart(ids[2], `GPU ${index} temperature`, [{ label: '°C', color: '#b3261e' }], (v) => `${Number(v).toFixed(0)} °C`, 100),
    power: makeChart(ids[3], `GPU ${index} power`, [{ label: 'W', color: '#a05a00' }], (v) => `${Number(v).toFixed(0)} W`, 10),
  };
  gpuCharts.set(index, g);
  return g;
}

/** A resource sample (MonitorSample); `draw` redraws every chart, off while loading history. */
export function addSample(s, draw) {
  pushPoint(cpuChart, s.atMs, [s.cpuPercent]);
  pushPoint(memChart, s.atMs, [s.memoryUsedBytes, s.memoryTotalBytes]);
  pushPoint(diskChart, s.atMs, [s.diskUsedBytes, s.diskTotalBytes]);
  pushPoint(netChart, s.atMs, [s.netRxBytesPerSec, s.netTxBytesPerSec]);
  for (const g of s.gpus || []) {
    const c = gpuChartsFor(g.index);
    pushPoint(c.util, s.atMs, [g.utilizationPercent]);
    pushPoint(c.mem, s.atMs, [g.memoryUsedBytes, g.memoryTotalBytes]);
    pushPoint(c.temp, s.atMs, [g.temperatureC]);
    pushPoint(c.power, s.atMs, [g.powerW]);
  }
  if (draw) redrawAll();
}

/** A contribution point; `draw` redraws its chart, off while loading history. */
export function addContribution(p, draw) {
  pushPoint(contribChart, p.atMs, [p.score]);
  if (draw) redraw(contribChart);
}

export function redrawAll() {
  for (const c of charts.values()) redraw(c);
}
