// The monitor's charts (uPlot, loaded as a global by monitor.html): CPU, memory, disk, network,
// the contribution score and four per GPU, each keeping the last 24 hours of points.
import { $, el, fmtBytes } from './monitor-dom.js';

const HOUR = 3600_000;
const KEEP_MS = 24 * HOUR; // chart points kept in the page

const charts = new Map(); // id -> { plot, data, series }
function makeChart(containerId, title, series, fmt) {
  const box = $(containerId);
  box.replaceChildren(el('div', { class: 'chart-title', text: title }));
  const data = [[], ...series.map(() => [])];
  const width = Math.max(280, box.clientWidth || 320);
  const plot = new uPlot(
    {
      width,
      height: 160,
      legend: { show: true },
      cursor: { drag: { x: false, y: false } },
      scales: { x: { time: true } },
      axes: [{}, { values: (_u, ticks) => ticks.map(fmt), size: 84 }],
      series: [{}, ...series.map((s) => ({ label: s.label, stroke: s.color, width: 1.5, value: (_u, v) => (v == null ? '–' : fmt(v)) }))],
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
  const cutoff = (Date.now() - KEEP_MS) / 1000;
  while (c.data[0].length && c.data[0][0] < cutoff) for (const col of c.data) col.shift();
}
function redraw(c) {
  c.plot.setData(c.data);
}
window.addEventListener('resize', () => {
  for (const c of charts.values()) c.plot.setSize({ width: Math.max(280, c.box.clientWidth), height: 160 });
});

const pct = (v) => `${Number(v).toFixed(0)} %`;
const bytes = (v) => fmtBytes(Number(v));
const rate = (v) => `${fmtBytes(Number(v))}/s`;
let cpuChart, memChart, diskChart, netChart, contribChart;
const gpuCharts = new Map(); // index -> { util, mem, temp, power }

export function initCharts() {
  cpuChart = makeChart('chart-cpu', 'CPU', [{ label: 'CPU', color: '#2456c7' }], pct);
  memChart = makeChart('chart-memory', 'Memory', [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes);
  diskChart = makeChart('chart-disk', 'Disk (data dir)', [{ label: 'used', color: '#a05a00' }, { label: 'total', color: '#b9bfcc' }], bytes);
  netChart = makeChart('chart-network', 'Network', [{ label: 'in', color: '#1f7a4d' }, { label: 'out', color: '#d12771' }], rate);
  contribChart = makeChart('chart-contribution', 'Score per interval', [{ label: 'score', color: '#1f7a4d' }], (v) => Number(v).toFixed(1));
}

function gpuChartsFor(index) {
  let g = gpuCharts.get(index);
  if (g) return g;
  const ids = ['util', 'mem', 'temp', 'power'].map((k) => `chart-gpu${index}-${k}`);
  for (const id of ids) $('gpu-charts').append(el('div', { class: 'chart', id, 'data-testid': id }));
  g = {
    util: makeChart(ids[0], `GPU ${index} utilisation`, [{ label: 'util', color: '#2456c7' }], pct),
    mem: makeChart(ids[1], `GPU ${index} VRAM`, [{ label: 'used', color: '#8a3ffc' }, { label: 'total', color: '#b9bfcc' }], bytes),
    temp: makeChart(ids[2], `GPU ${index} temperature`, [{ label: '°C', color: '#b3261e' }], (v) => `${Number(v).toFixed(0)} °C`),
    power: makeChart(ids[3], `GPU ${index} power`, [{ label: 'W', color: '#a05a00' }], (v) => `${Number(v).toFixed(0)} W`),
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
