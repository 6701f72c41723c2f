// The master's metrics: the series text (escaping, histograms), the node-state and task-flow
// decisions, the gRPC call labels, and the operations listener's routes on a loopback socket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { connect } from 'node:net';
import { status } from '@grpc/grpc-js';
import { silentLogger } from '../../src/common/logger.js';
import { OutcomeKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import { MasterMetrics, PLACEMENT_BUCKETS } from '../../src/master/metrics/master-metrics.js';
import { NodeStateBoard, nodeState } from '../../src/master/metrics/node-states.js';
import { TaskFlowMetrics, outcomeWord } from '../../src/master/metrics/task-flow-metrics.js';
import { codeName, splitMethodPath } from '../../src/master/metrics/grpc-call-metrics.js';
import { OPS_LIMITS, OpsHttpServer, opsRoute, type Readiness } from '../../src/master/metrics/ops-http.js';
import { recordHostile } from '../helpers/fault-ledger.js';

function metrics(byReason?: Map<string, number>): MasterMetrics {
  return new MasterMetrics({
    nodeStates: () => ({ online: 3, offline: 1, draining: 0, paused: 2 }),
    tasksQueued: () => 7,
    ...(byReason ? { queueDepthByReason: () => byReason } : {}),
  });
}

/** The sample lines of one metric family (name and labels → value). */
function samples(text: string, family: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of text.split('\n')) {
    if (line.startsWith('#') || !line.startsWith(family)) continue;
    const at = line.lastIndexOf(' ');
    out.set(line.slice(0, at), Number(line.slice(at + 1)));
  }
  return out;
}

test('every master series has HELP and TYPE and the hivemind_master_ prefix', async (t) => {
  const m = metrics(new Map([['no_fit', 2]]));
  t.after(() => m.close());
  const text = await m.render();
  const names = [...text.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((x) => x[1]!);
  for (const want of ['nodes', 'tasks_queued', 'tasks_queued_by_reason', 'tasks_submitted_total', 'tasks_finished_total', 'placement_latency_seconds', 'reports_total',
    'grpc_calls_total', 'grpc_call_duration_seconds', 'db_duration_seconds', 'event_loop_lag_seconds', 'process_resident_memory_bytes', 'process_cpu_seconds_total', 'process_start_time_seconds']) {
    assert.ok(names.includes(`hivemind_master_${want}`), `${want} is written`);
    assert.match(text, new RegExp(`^# HELP hivemind_master_${want} \\S`, 'm'));
  }
  for (const n of names) assert.ok(n.startsWith('hivemind_master_'), n);
  assert.equal(samples(text, 'hivemind_master_nodes{').get('hivemind_master_nodes{state="paused"}'), 2);
  assert.match(text, /^hivemind_master_tasks_queued 7$/m);
  assert.match(text, /^hivemind_master_tasks_queued_by_reason\{reason="no_fit"\} 2$/m);
});

test('without a by-reason source that series is not written at all', async (t) => {
  const m = metrics();
  t.after(() => m.close());
  assert.doesNotMatch(await m.render(), /tasks_queued_by_reason/);
});

test('label values are escaped: backslash, quote and newline', async (t) => {
  const m = metrics(new Map([['a"b\\c\nd', 1]]));
  t.after(() => m.close());
  m.taskFinished('exited');
  const text = await m.render();
  // Escaped: the raw value (its quote ending the label early, its newline starting a line) never appears.
  recordHostile('metrics label value with quote, backslash, newline', text.includes('reason="a"b') || text.includes('c\nd"'));
  assert.ok(text.includes('hivemind_master_tasks_queued_by_reason{reason="a\\"b\\\\c\\nd"} 1'), text);
});

test('the placement histogram is cumulative, ends in +Inf, and sums and counts every observation', async (t) => {
  const m = metrics();
  t.after(() => m.close());
  for (const s of [0.0005, 0.003, 0.003, 0.2, 45, 120]) m.taskPlaced(s);
  const text = await m.render();
  const b = samples(text, 'hivemind_master_placement_latency_seconds_bucket');
  assert.equal(b.size, PLACEMENT_BUCKETS.length + 1, 'one line per bucket and +Inf');
  let prev = 0;
  for (const le of PLACEMENT_BUCKETS) {
    const v = b.get(`hivemind_master_placement_latency_seconds_bucket{le="${le}"}`);
    assert.ok(v !== undefined, `bucket ${le}`);
    assert.ok(v >= prev, `bucket ${le} is cumulative`);
    prev = v;
  }
  assert.equal(b.get('hivemind_master_placement_latency_seconds_bucket{le="0.001"}'), 1);
  assert.equal(b.get('hivemind_master_placement_latency_seconds_bucket{le="0.005"}'), 3);
  assert.equal(b.get('hivemind_master_placement_latency_seconds_bucket{le="60"}'), 5, 'the 120 s wait is only in +Inf');
  assert.equal(b.get('hivemind_master_placement_latency_seconds_bucket{le="+Inf"}'), 6);
  assert.equal(samples(text, 'hivemind_master_placement_latency_seconds_count').get('hivemind_master_placement_latency_seconds_count'), 6);
  const sum = samples(text, 'hivemind_master_placement_latency_seconds_sum').get('hivemind_master_placement_latency_seconds_sum')!;
  assert.ok(Math.abs(sum - 165.2065) < 1e-9, String(sum));
});

test('gRPC calls count by service, method and code; their durations by service and method', async (t) => {
  const m = metrics();
  t.after(() => m.close());
  const { service, method } = splitMethodPath('/hivemind.v1.AdminService/SubmitTask');
  assert.deepEqual({ service, method }, { service: 'hivemind.v1.AdminService', method: 'SubmitTask' });
  m.grpcCall(service, method, codeName(status.OK), 0.002);
  m.grpcCall(service, method, codeName(status.UNAUTHENTICATED), 0.001);
  m.grpcCall(service, method, codeName(status.OK), 0.004);
  const text = await m.render();
  const calls = samples(text, 'hivemind_master_grpc_calls_total{');
  assert.equal(calls.get('hivemind_master_grpc_calls_total{service="hivemind.v1.AdminService",method="SubmitTask",code="OK"}'), 2);
  assert.equal(calls.get('hivemind_master_grpc_calls_total{service="hivemind.v1.AdminService",method="SubmitTask",code="UNAUTHENTICATED"}'), 1);
  assert.equal(samples(text, 'hivemind_master_grpc_call_duration_seconds_count').get('hivemind_master_grpc_call_duration_seconds_count{service="hivemind.v1.AdminService",method="SubmitTask"}'), 3);
  assert.equal(codeName(99), '99');
  assert.deepEqual(splitMethodPath('odd'), { service: 'unknown', method: 'odd' });
});

test('a node is offline when silent, else draining, paused or online from its latest report', () => {
  assert.equal(nodeState(false, { lifecycle: 'draining', accepting: false }), 'offline');
  assert.equal(nodeState(true, undefined), 'online', 'back after a master restart, no report yet');
  assert.equal(nodeState(true, { lifecycle: 'draining', accepting: false }), 'draining');
  assert.equal(nodeState(true, { lifecycle: 'connected', accepting: false }), 'paused');
  assert.equal(nodeState(true, { lifecycle: 'connected', accepting: true }), 'online');
  const board = new NodeStateBoard();
  board.onReport('a', { lifecycleState: 'connected', accepting: true });
  board.onReport('b', { lifecycleState: 'draining', accepting: false });
  board.onReport('c', { lifecycleState: 'connected', accepting: false });
  board.onReport('gone', { lifecycleState: 'connected', accepting: true });
  // 'gone' reported, then went offline: only the online ones are classed by their report.
  assert.deepEqual(board.counts(4, ['a', 'b', 'c']), { online: 1, offline: 1, draining: 1, paused: 1 });
  assert.deepEqual(board.counts(5, ['a', 'b', 'c', 'e']), { online: 2, offline: 1, draining: 1, paused: 1 }, 'online with no report yet (back after a restart) counts as online');
  assert.deepEqual(board.counts(0, []), { online: 0, offline: 0, draining: 0, paused: 0 });
});

test('task flow: a submission counts once (a requeue is none), outcomes are words', () => {
  const seen = { submitted: 0, finished: [] as string[] };
  const flow = new TaskFlowMetrics({ taskSubmitted: () => seen.submitted++, taskFinished: (o) => seen.finished.push(o) });
  const at = 1_000;
  const row = { id: 't1', state: TaskState.TASK_STATE_QUEUED, attempt: 1, createdAt: at, updatedAt: at, outcome: undefined };
  flow.onTask(row);
  flow.onTask({ ...row, state: TaskState.TASK_STATE_ASSIGNED, updatedAt: at + 500 });
  assert.equal(seen.submitted, 1);
  // Rejected: back in the queue with the same attempt, not a new submission; nor a lost attempt.
  flow.onTask({ ...row, updatedAt: at + 600 });
  flow.onTask({ ...row, attempt: 2, updatedAt: at + 700 });
  assert.equal(seen.submitted, 1);
  flow.onTask({ ...row, state: TaskState.TASK_STATE_FAILED, outcome: { kind: OutcomeKind.OUTCOME_KIND_OOM_KILLED } as never });
  flow.onTask({ ...row, id: 't2', state: TaskState.TASK_STATE_CANCELLED });
  assert.deepEqual(seen.finished, ['oom_killed', 'cancelled']);
  assert.equal(outcomeWord(OutcomeKind.OUTCOME_KIND_NODE_LOST), 'node_lost');
  assert.equal(outcomeWord(undefined), 'unknown');
  assert.equal(outcomeWord(1234 as OutcomeKind), 'unknown');
});

test('ops routes: three paths, GET or HEAD, a query ignored', () => {
  assert.equal(opsRoute('GET', '/healthz'), 'healthz');
  assert.equal(opsRoute('HEAD', '/readyz'), 'readyz');
  assert.equal(opsRoute('GET', '/metrics?x=1'), 'metrics');
  assert.deepEqual(opsRoute('POST', '/metrics'), { status: 405, message: 'metrics is read with GET' });
  assert.equal((opsRoute('GET', '/metrics/x') as { status: number }).status, 404);
  assert.equal((opsRoute('GET', '/') as { status: number }).status, 404);
  assert.equal((opsRoute('DELETE', '/nope') as { status: number }).status, 404, 'an unknown path is 404 whatever the method');
});

interface Reply { status: number; body: string; headers: Record<string, string | string[] | undefined> }

function get(url: string, path: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(`${url}${path}`, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

async function ops(t: { after: (fn: () => unknown) => void }, o: { needToken: boolean; readiness: () => Readiness }): Promise<string> {
  const server = new OpsHttpServer({
    listen: { host: '127.0.0.1', port: 0 },
    metricsNeedToken: o.needToken,
    isAdminToken: (token) => token === 'admin-secret',
    readiness: o.readiness,
    metrics: async () => '# HELP x_total X.\n# TYPE x_total counter\nx_total 1\n',
    log: silentLogger(),
  });
  const { url } = await server.start();
  t.after(() => server.close());
  return url;
}

test('the operations listener: healthz, readyz through start and shutdown, 404 and 405', async (t) => {
  let readiness: Readiness = { ready: false, reason: 'starting' };
  const url = await ops(t, { needToken: false, readiness: () => readiness });
  assert.deepEqual(await get(url, '/healthz').then((r) => [r.status, r.body]), [200, 'ok\n']);
  const starting = await get(url, '/readyz');
  assert.deepEqual([starting.status, starting.body], [503, 'not ready: starting\n']);
  readiness = { ready: true };
  assert.equal((await get(url, '/readyz')).status, 200);
  readiness = { ready: false, reason: 'shutting down' };
  assert.deepEqual(await get(url, '/readyz').then((r) => [r.status, r.body]), [503, 'not ready: shutting down\n']);
  const missing = await get(url, '/admin');
  assert.equal(missing.status, 404);
  const post = await get(url, '/metrics', { method: 'POST', body: 'x'.repeat(100_000) });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
  assert.equal(post.headers.connection, 'close', 'a request with a body is answered and its connection closed, the body unread');
  const head = await get(url, '/healthz', { method: 'HEAD' });
  assert.deepEqual([head.status, head.body], [200, '']);
  recordHostile('ops listener: unknown path, POST with a 100 kB body', missing.status !== 404 || post.status !== 405, 2);
});

test('the operations listener bounds the request head', async (t) => {
  const url = await ops(t, { needToken: false, readiness: () => ({ ready: true }) });
  const big = await get(url, '/healthz', { headers: { 'x-pad': 'y'.repeat(OPS_LIMITS.maxHeaderBytes + 1) } });
  assert.equal(big.status, 431);
  recordHostile('ops listener: request head over its limit', big.status !== 431);
  // A head that never ends is cut at the headers timeout; the listener keeps answering others.
  const port = Number(new URL(url).port);
  const slow = connect(port, '127.0.0.1');
  t.after(() => slow.destroy());
  slow.write('GET /healthz HTTP/1.1\r\nHost: x\r\n');
  assert.equal((await get(url, '/healthz')).status, 200);
});

test('/metrics on loopback needs no token; off loopback it takes the admin token only', async (t) => {
  const open = await ops(t, { needToken: false, readiness: () => ({ ready: true }) });
  const free = await get(open, '/metrics');
  assert.equal(free.status, 200);
  assert.equal(free.headers['content-type'], 'text/plain; version=0.0.4; charset=utf-8');
  assert.match(free.body, /^x_total 1$/m);

  const guarded = await ops(t, { needToken: true, readiness: () => ({ ready: true }) });
  const none = await get(guarded, '/metrics');
  assert.equal(none.status, 401);
  assert.equal(none.headers['www-authenticate'], 'Bearer realm="hivemind-admin"');
  assert.match(none.body, /admin token/);
  const wrong = await get(guarded, '/metrics', { headers: { authorization: 'Bearer service-token' } });
  assert.equal(wrong.status, 401);
  assert.match(wrong.body, /not the master's admin token/);
  const right = await get(guarded, '/metrics', { headers: { authorization: 'Bearer admin-secret' } });
  assert.equal(right.status, 200);
  assert.match(right.body, /^x_total 1$/m);
  // Health stays open: probes carry no token.
  assert.equal((await get(guarded, '/healthz')).status, 200);
  assert.equal((await get(guarded, '/readyz')).status, 200);
  recordHostile('ops /metrics off loopback without or with a wrong token', none.status !== 401 || wrong.status !== 401, 2);
});
