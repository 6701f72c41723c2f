// The monitor's Services parts without I/O: a replica's state from its status, the panel's rows
// (status joined with the gateway pipe's counters), requests per second from the connection
// counter, the per-service pipe totals that survive replica replacements, and the /metrics lines.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MonitorMetrics } from '../../src/monitor/monitor-metrics.js';
import { ServicePipeTotals } from '../../src/monitor/replica-metrics.js';
import { PipeRates, replicaState, servicesView } from '../../src/monitor/replica-view.js';
import type { ReplicaStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { GatewayPipeView, ReplicaPipeCounters, ReplicaView } from '../../src/worker/contracts.js';

const status = (over: Partial<ReplicaStatus> = {}): ReplicaStatus => ({ healthy: false, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: false, ...over });
const replica = (taskId: string, service: string, index: number, s?: Partial<ReplicaStatus>, attempt = 1): ReplicaView => ({ taskId, attempt, service, index, status: s ? status(s) : undefined });
const pipeOf = (taskId: string, c: Partial<ReplicaPipeCounters>, attempt = 1): ReplicaPipeCounters => ({ taskId, attempt, connections: 0, open: 0, bytesIn: 0, bytesOut: 0, ...c });
const gateway = (replicas: ReplicaPipeCounters[], over: Partial<GatewayPipeView['counters']> = {}): GatewayPipeView => ({
  port: 7946,
  counters: { open: 0, relayed: 0, errors: 0, refused: { source: 1, key: 2, malformed: 0, timeout: 0, 'over-limit': 3 }, replicas, ...over },
});

test('replica state: starting before any status and between a restart and its running container, restarting during the backoff', () => {
  assert.equal(replicaState(replica('t', 'web', 0)), 'starting');
  assert.equal(replicaState(replica('t', 'web', 0, { running: true })), 'running');
  assert.equal(replicaState(replica('t', 'web', 0, { running: false, restartAtMs: 5_000, lastExit: 'exited with code 1' })), 'restarting');
  assert.equal(replicaState(replica('t', 'web', 0, { running: false, restartAtMs: 0, restarts: 1 })), 'starting');
});

test('services view: rows by service then index, status fields, pipe counters joined by attempt, gateway totals', () => {
  const rates = new PipeRates();
  const v = servicesView(
    [
      replica('t-b1', 'web', 1, { running: true, healthy: false, healthMessage: 'GET /healthz: 503', restarts: 2, lastExit: 'OOM killed', lastExitAtMs: 900 }),
      replica('t-api', 'api', 0, { running: false, restartAtMs: 2_000 }),
      replica('t-b0', 'web', 0, { running: true, healthy: true }, 2),
    ],
    gateway([pipeOf('t-b0', { connections: 5, open: 1, bytesIn: 100, bytesOut: 2000 }, 2), pipeOf('t-b0', { connections: 99 }, 1)], { open: 1, relayed: 5, errors: 4 }),
    rates,
    10_000,
  );
  assert.deepEqual(v.gateway, { port: 7946, open: 1, relayed: 5, errors: 4, refused: 6 });
  assert.deepEqual(v.replicas.map((r) => `${r.service}/${r.index}`), ['api/0', 'web/0', 'web/1']);
  const [api, web0, web1] = v.replicas;
  assert.deepEqual(api, {
    taskId: 't-api', attempt: 1, service: 'api', index: 0, state: 'restarting', healthy: false, healthMessage: '', restarts: 0,
    lastExit: null, lastExitAtMs: null, restartAtMs: 2_000, pipe: { connections: 0, open: 0, bytesIn: 0, bytesOut: 0 }, requestsPerSecond: null,
  });
  // Attempt 2's counters, not those of attempt 1 of the same task.
  assert.deepEqual(web0!.pipe, { connections: 5, open: 1, bytesIn: 100, bytesOut: 2000 });
  assert.equal(web0!.healthy, true);
  assert.deepEqual([web1!.state, web1!.healthMessage, web1!.restarts, web1!.lastExit, web1!.lastExitAtMs], ['running', 'GET /healthz: 503', 2, 'OOM killed', 900]);
});

test('services view: a node without a gateway pipe has no gateway and no rates; an empty node no rows', () => {
  const v = servicesView([replica('t', 'web', 0, { running: true })], undefined, new PipeRates(), 1_000);
  assert.equal(v.gateway, null);
  assert.equal(v.replicas[0]!.requestsPerSecond, null);
  assert.deepEqual(servicesView([], undefined, new PipeRates(), 1_000), { gateway: null, replicas: [] });
});

test('pipe rates: null for the first second, then connections per second over the last 10 s window', () => {
  const r = new PipeRates(10_000);
  assert.equal(r.rate('a', 0, 0), null);
  assert.equal(r.rate('a', 3, 500), null, 'under a second of data');
  assert.equal(r.rate('a', 10, 1_000), 10);
  assert.equal(r.rate('a', 40, 4_000), 10);
  // A burst in the last second is averaged over the window, then the old samples slide out.
  assert.equal(r.rate('a', 140, 10_000), 14);
  assert.equal(r.rate('a', 140, 20_000), 0, 'no connections for 10 s');
  // A counter that went down (cannot happen for one attempt) never reads as a negative rate.
  assert.equal(r.rate('a', 0, 21_000), 0);
});

test('pipe rates: replicas gone from the node are forgotten (a new attempt starts from scratch)', () => {
  const rates = new PipeRates();
  const g = (n: number) => gateway([pipeOf('t', { connections: n })]);
  servicesView([replica('t', 'web', 0)], g(0), rates, 0);
  assert.equal(servicesView([replica('t', 'web', 0)], g(20), rates, 2_000).replicas[0]!.requestsPerSecond, 10);
  servicesView([], g(20), rates, 3_000);
  assert.equal(servicesView([replica('t', 'web', 0)], g(30), rates, 4_000).replicas[0]!.requestsPerSecond, null);
});

test('service pipe totals: summed by service, kept across a replica replaced by a new attempt, open only from seen attempts', () => {
  const t = new ServicePipeTotals(2);
  t.update([replica('w0', 'web', 0), replica('a0', 'api', 0)], gateway([pipeOf('w0', { connections: 3, open: 1, bytesIn: 30, bytesOut: 300 }), pipeOf('a0', { connections: 1, bytesIn: 1, bytesOut: 2 }), pipeOf('stranger', { connections: 50 })]));
  assert.deepEqual(t.totals(), [['api', { connections: 1, open: 0, bytesIn: 1, bytesOut: 2 }], ['web', { connections: 3, open: 1, bytesIn: 30, bytesOut: 300 }]]);
  // w0 ended (its counters still at the pipe, then dropped by it); w1 replaced it. Totals never go down.
  t.update([replica('w1', 'web', 0, undefined), replica('a0', 'api', 0)], gateway([pipeOf('w0', { connections: 4, bytesIn: 40, bytesOut: 400 }), pipeOf('w1', { connections: 2, open: 2, bytesIn: 5, bytesOut: 6 })]));
  assert.deepEqual(t.totals().find(([s]) => s === 'web')![1], { connections: 6, open: 2, bytesIn: 45, bytesOut: 406 });
  t.update([replica('w1', 'web', 0), replica('a0', 'api', 0)], gateway([pipeOf('w1', { connections: 2, open: 0, bytesIn: 5, bytesOut: 6 })]));
  assert.deepEqual(t.totals().find(([s]) => s === 'web')![1], { connections: 6, open: 0, bytesIn: 45, bytesOut: 406 }, 'w0 (past the bound of 2 attempts) lives on in the carry; only open went down');
});

test('metrics: replicas by state and health, restarts, pipe traffic by service, refusals; absent series without replicas', async () => {
  const node = {
    list: [replica('w0', 'web', 0, { running: true, healthy: true, restarts: 1 }), replica('w1', 'web', 1, { running: false, restartAtMs: 9, restarts: 4 })],
    gateway: gateway([pipeOf('w0', { connections: 7, open: 1, bytesIn: 70, bytesOut: 700 })], { errors: 2 }) as GatewayPipeView | undefined,
    replicas() {
      return this.list;
    },
  };
  const m = new MonitorMetrics(() => 0, () => 0, () => true, undefined, node);
  const body = (await m.text()).body;
  for (const line of [
    'hivemind_replicas{service="web",replica="0",state="running",healthy="true"} 1',
    'hivemind_replicas{service="web",replica="1",state="restarting",healthy="false"} 1',
    'hivemind_replica_restarts_total{service="web",replica="0"} 1',
    'hivemind_replica_restarts_total{service="web",replica="1"} 4',
    'hivemind_gateway_pipe_listening 1',
    'hivemind_gateway_pipe_connections_total{service="web"} 7',
    'hivemind_gateway_pipe_open_connections{service="web"} 1',
    'hivemind_gateway_pipe_bytes_total{service="web",direction="in"} 70',
    'hivemind_gateway_pipe_bytes_total{service="web",direction="out"} 700',
    'hivemind_gateway_pipe_refused_total{reason="over-limit"} 3',
    'hivemind_gateway_pipe_errors_total 2',
  ]) {
    assert.ok(body.includes(`${line}\n`), `has ${line}`);
  }
  node.list = [];
  node.gateway = undefined;
  const after = (await m.text()).body;
  assert.ok(!/^hivemind_replicas\{/m.test(after), 'no replica series once they are gone');
  assert.ok(after.includes('hivemind_gateway_pipe_listening 0\n'));
  assert.ok(after.includes('hivemind_gateway_pipe_connections_total{service="web"} 7\n'), 'the counter does not go back');
});
