// The master's operations listener on a real `hivemind master start` with a real worker:
// /healthz and /readyz answer, /metrics passes `promtool check metrics`, and its series move as
// the master works (a task submitted, placed and finished; reports arriving; gRPC calls counted).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { promtoolPath, requireDockerImage, requirePromtool } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';

const IMAGE = 'hivemind/busybox:1';

/** One sample's value (0 when the series is not written yet). */
function value(text: string, series: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${series} `));
  return line ? Number(line.slice(series.length + 1)) : 0;
}

function promtool(text: string): string {
  return execFileSync(promtoolPath(), ['check', 'metrics'], { input: text, stdio: ['pipe', 'pipe', 'pipe'], timeout: 30_000 }).toString();
}

test('the master serves /healthz, /readyz and a /metrics that promtool accepts and that moves with the work', async (t) => {
  if (!requirePromtool(t) || !requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  t.after(() => cluster.close());
  const url = await waitFor('the operations listener', () => cluster.metricsUrl());
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);

  const health = await fetch(`${url}/healthz`);
  assert.deepEqual([health.status, await health.text()], [200, 'ok\n']);
  const ready = await fetch(`${url}/readyz`);
  assert.equal(ready.status, 200, 'a started master is ready');
  assert.equal((await fetch(`${url}/metrics`, { method: 'POST' })).status, 405);
  assert.equal((await fetch(`${url}/nothing`)).status, 404);

  const scrape = async () => {
    const r = await fetch(`${url}/metrics`);
    assert.equal(r.status, 200, 'loopback: no token needed');
    assert.equal(r.headers.get('content-type'), 'text/plain; version=0.0.4; charset=utf-8');
    return r.text();
  };
  const before = await scrape();
  promtool(before); // throws (the test fails) on any problem promtool reports, lint included
  assert.equal(value(before, 'hivemind_master_nodes{state="online"}'), 1, 'the worker is online');
  for (const family of ['hivemind_master_event_loop_lag_seconds{stat="p99"}', 'hivemind_master_process_resident_memory_bytes', 'hivemind_master_process_start_time_seconds']) {
    assert.ok(value(before, family) > 0, `${family} is written`);
  }
  // The gateway's series come in the same body, written once.
  assert.match(before, /^# TYPE hivemind_gateway_requests_total counter$/m);
  assert.equal(before.match(/^# TYPE hivemind_gateway_requests_total /gm)?.length, 1);

  // Reports arrive every second (the cluster's report interval).
  const reports0 = value(before, 'hivemind_master_reports_total');
  await waitFor('a report counted', async () => value(await scrape(), 'hivemind_master_reports_total') > reports0 || undefined, 10_000, 200);

  const sub = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'true']);
  assert.equal(sub.code, 0, sub.stdout + sub.stderr);
  const after = await scrape();
  promtool(after);
  assert.equal(value(after, 'hivemind_master_tasks_submitted_total') - value(before, 'hivemind_master_tasks_submitted_total'), 1);
  assert.equal(value(after, 'hivemind_master_placement_latency_seconds_count') - value(before, 'hivemind_master_placement_latency_seconds_count'), 1, 'the placement was observed');
  assert.ok(value(after, 'hivemind_master_placement_latency_seconds_sum') > 0);
  assert.equal(value(after, 'hivemind_master_tasks_finished_total{outcome="exited"}') - value(before, 'hivemind_master_tasks_finished_total{outcome="exited"}'), 1);
  assert.equal(value(after, 'hivemind_master_tasks_queued'), 0);
  assert.ok(value(after, 'hivemind_master_grpc_calls_total{service="hivemind.v1.AdminService",method="SubmitTask",code="OK"}') >= 1, 'the submit call is counted');
  assert.ok(value(after, 'hivemind_master_grpc_calls_total{service="hivemind.v1.NodeService",method="UpdateTask",code="OK"}') >= 1, 'the worker\'s updates are counted');
  assert.ok(value(after, 'hivemind_master_db_duration_seconds_count{op="transaction"}') > value(before, 'hivemind_master_db_duration_seconds_count{op="transaction"}'));
});
