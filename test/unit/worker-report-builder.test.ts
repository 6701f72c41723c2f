import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildReport } from '../../src/worker/resources/report-builder.js';
import type { HostSample } from '../../src/worker/resources/resource-probe.js';

const sample: HostSample = {
  atMs: 1_700_000_000_000,
  cpuPercent: 12.5,
  memoryUsedBytes: 1000,
  memoryTotalBytes: 4000,
  diskUsedBytes: 10,
  diskTotalBytes: 100,
  netRxBytesPerSec: 1.6,
  netTxBytesPerSec: -3,
  gpus: [
    { index: 0, uuid: 'GPU-a', name: 'A', memoryTotalBytes: 8, memoryUsedBytes: 2, utilizationPercent: 50, temperatureC: 40, powerW: 100 },
    { index: 1, uuid: 'GPU-b', name: 'B', memoryTotalBytes: 8 },
  ],
  docker: { ok: false, message: 'Cannot connect to the Docker daemon' },
};
const free = { cpus: 2, memoryBytes: 5, gpuIndexes: [1], taskSlots: 1 };

test('builds the wire report from a sample, capacity and state', () => {
  const r = buildReport({ seq: 7, sample, free, lifecycleState: 'connected', accepting: true });
  assert.equal(r.seq, 7);
  assert.equal(r.atMs, sample.atMs);
  assert.equal(r.cpuPercent, 12.5);
  assert.equal(r.memoryUsedBytes, 1000);
  assert.equal(r.diskTotalBytes, 100);
  assert.equal(r.netRxBytesPerSec, 2);
  assert.equal(r.netTxBytesPerSec, 0, 'negative rates (counter reset) are reported as 0');
  assert.deepEqual(r.gpus, [
    { index: 0, utilizationPercent: 50, memoryUsedBytes: 2, memoryTotalBytes: 8, temperatureC: 40, powerW: 100 },
    { index: 1, utilizationPercent: 0, memoryUsedBytes: 0, memoryTotalBytes: 8, temperatureC: 0, powerW: 0 },
  ]);
  assert.equal(r.dockerOk, false);
  assert.equal(r.dockerMessage, 'Cannot connect to the Docker daemon');
  assert.deepEqual(r.free, free);
  assert.equal(r.lifecycleState, 'connected');
  assert.equal(r.accepting, true);
  assert.deepEqual(r.tasks, []);
});

test('clamps out-of-range percentages and hides the docker message when ok', () => {
  const r = buildReport({ seq: 1, sample: { ...sample, cpuPercent: 130, docker: { ok: true, version: '20.10' } }, free, lifecycleState: 'draining', accepting: false });
  assert.equal(r.cpuPercent, 100);
  assert.equal(r.dockerOk, true);
  assert.equal(r.dockerMessage, '');
  assert.equal(r.accepting, false);
  const nan = buildReport({ seq: 1, sample: { ...sample, cpuPercent: Number.NaN }, free, lifecycleState: 'x', accepting: true });
  assert.equal(nan.cpuPercent, 0);
});
