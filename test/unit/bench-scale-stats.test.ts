import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cpuPercent, parseProcStat, parseStatusBytes } from '../../scripts/scale/proc-stat.js';
import { costTable, markdownTable, percentile, spread, type ScaleResult } from '../../scripts/scale/stats.js';

test('percentile is nearest-rank over the sorted samples, undefined without samples', () => {
  assert.equal(percentile([], 50), undefined);
  assert.equal(percentile([7], 99), 7);
  const xs = [5, 1, 4, 2, 3, 10, 9, 8, 7, 6];
  assert.equal(percentile(xs, 50), 5);
  assert.equal(percentile(xs, 99), 10);
  assert.equal(percentile(xs, 0), 1);
  assert.equal(percentile(xs, 90), 9);
  const hundred = Array.from({ length: 100 }, (_, i) => i + 1);
  assert.deepEqual(spread(hundred), { n: 100, p50: 50, p99: 99 });
  assert.deepEqual(xs.slice(0, 3), [5, 1, 4], 'the samples are not sorted in place');
});

test('/proc/PID/stat: utime and stime counted from the last ")" of a name with spaces and parentheses', () => {
  const rest = 'S 1 100 100 0 -1 4194560 5000 0 0 0 1234 567 0 0 20 0 11 0 9000 1000000 20000';
  assert.deepEqual(parseProcStat(`4242 (node) ${rest}`), { utime: 1234, stime: 567 });
  assert.deepEqual(parseProcStat(`4242 (my (odd) name) ${rest}`), { utime: 1234, stime: 567 });
  assert.throws(() => parseProcStat('garbage'), /not a \/proc\/PID\/stat line/);
  assert.throws(() => parseProcStat('1 (x) S 1'), /no utime\/stime/);
});

test('/proc/PID/status: VmRSS and VmHWM in bytes, undefined when absent', () => {
  const status = 'Name:\tnode\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\nThreads:\t11\n';
  assert.equal(parseStatusBytes(status, 'VmRSS'), 102400 * 1024);
  assert.equal(parseStatusBytes(status, 'VmHWM'), 204800 * 1024);
  assert.equal(parseStatusBytes('Name:\tkthreadd\n', 'VmRSS'), undefined);
});

test('CPU % is CPU time over wall time between two samples', () => {
  const a = { cpuMs: 1000, rssBytes: 0, peakRssBytes: 0, atMs: 0 };
  assert.equal(cpuPercent(a, { ...a, cpuMs: 1500, atMs: 1000 }), 50);
  assert.equal(cpuPercent(a, a), 0);
});

test('the table has one row per run with the issue columns, latencies in ms or s', () => {
  const r: ScaleResult = {
    nodes: 10_000, queued: 10_000, queuedAsked: 10_000, reportIntervalMs: 30_000, nodesPerChannel: 200, loadCore: false, nodesUp: 10_000, enrollMs: 42_000, submitMs: 9_000,
    placementMs: { n: 30, p50: 24_000, p99: 81_000 }, probesLost: 2,
    throughput: { seconds: 60, submitted: 0, completed: 0, perSecond: 0 },
    idle: { seconds: 90, reports: 30_000, cpuMsPerReport: 1.234, cpuPercent: 41 },
    master: { cpuPercent: 99.6, maxRssBytes: 512 * 1024 ** 2 },
    uploadMs: { n: 0 }, listNodesMs: { n: 3, p50: 120, p99: 300 }, listTasksMs: { n: 3, p50: 80, p99: 90 }, listErrors: 0,
    wronglyOffline: 17, nodeErrors: {}, eventLoopStalls: 'n/a', rpcThreadStalls: 'n/a',
  };
  const lines = markdownTable([r]).split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^\| nodes \| tasks\/s \| placement p50 \/ p99 \| master CPU \/ max RSS \| upload p50 \|/);
  assert.equal(lines[2], '| 10,000 | 0.0 | 24.0 s / 81.0 s (2 never placed) | 100 % / 512 MiB | - | 120 ms / 300 ms | 80 ms / 90 ms | 17 |');
  assert.equal(costTable([r]).split('\n')[2], '| 10,000 | 10,000 | 41 % | 1.23 | - | 42.0 s | 9000 ms |');
});
