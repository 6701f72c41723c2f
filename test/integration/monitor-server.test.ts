// The monitor server in-process against a fake node and a real SQLite store: token mode (page,
// API, Socket.IO), a busy port, a fast history with 10,000 tasks, hostile paths, and the data
// cache panel and metrics from a real data cache.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { request as httpRequest } from 'node:http';
import { PassThrough } from 'node:stream';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { MonitorPortInUseError, MonitorServer } from '../../src/monitor/monitor-server.js';
import { monitorFixture as fixture, seededDataCache } from '../helpers/fake-monitored-node.js';
import type { CacheView, ServicesView } from '../../src/monitor/monitor-types.js';
import { TaskState, type ReplicaStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import { createLogger, silentLogger } from '../../src/common/logger.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { systemClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';

test('token mode: the page, the API and Socket.IO need the token; ?token= sets an HttpOnly cookie', async (t) => {
  const { store, node } = await fixture(t);
  const token = 'monitor-token-0123456789';
  // A token lets the monitor answer to any Host (it may listen on a LAN address).
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0, token }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const base = `http://127.0.0.1:${m.port}`;
  assert.equal((await fetch(`${base}/api/status`)).status, 401);
  assert.equal((await fetch(`${base}/monitor.html`)).status, 401);
  assert.equal((await fetch(`${base}/healthz`)).status, 200, 'health checks stay open for supervisors');
  assert.equal((await fetch(`${base}/monitor.html?token=wrong-token-000000000`, { redirect: 'manual' })).status, 401);
  const login = await fetch(`${base}/monitor.html?token=${token}`, { redirect: 'manual' });
  assert.equal(login.status, 302);
  const cookie = login.headers.get('set-cookie') ?? '';
  assert.match(cookie, /hm_monitor=/);
  assert.match(cookie, /HttpOnly/i);
  assert.match(cookie, /SameSite=Strict/i);
  const jar = cookie.split(';')[0]!;
  const withCookie = await fetch(`${base}/api/status`, { headers: { cookie: jar } });
  assert.equal(withCookie.status, 200);
  const status = (await withCookie.json()) as { tunnel: { state: string; handshakeAgeMs: number }; node: { problems: string[] } };
  assert.ok(!JSON.stringify(status).includes(token), 'the token is not echoed back');
  assert.equal(status.tunnel.state, 'stale');
  assert.ok(status.tunnel.handshakeAgeMs >= 400_000);
  assert.ok(status.node.problems.some((p) => /tunnel hivemind0 is stale \(last handshake \d+ s ago\)/.test(p)), status.node.problems.join('; '));
  assert.equal((await fetch(`${base}/api/status`, { headers: { authorization: `Bearer ${token}` } })).status, 200);

  const refused = io(base, { transports: ['websocket'], reconnection: false });
  const err = await new Promise<Error>((resolve) => refused.on('connect_error', resolve));
  refused.close();
  assert.match(err.message, /monitor token required/);
  const ok = io(base, { transports: ['websocket'], reconnection: false, auth: { token } });
  const first = await new Promise<{ node: { id: string } }>((resolve, reject) => {
    ok.on('status', resolve);
    ok.on('connect_error', reject);
  });
  ok.close();
  assert.equal(first.node.id, 'node-1');
});

test('a busy port is a clear MonitorPortInUseError; a public bind without a token is refused', async (t) => {
  const { store, node } = await fixture(t);
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  t.after(() => blocker.close());
  const port = (blocker.address() as { port: number }).port;
  await assert.rejects(
    MonitorServer.start({ host: '127.0.0.1', port }, { node, store, clock: systemClock, logger: silentLogger() }),
    (e: unknown) => e instanceof MonitorPortInUseError && e.message.includes(`port ${port}`) && e.message.includes('--monitor-port'),
  );
  await assert.rejects(MonitorServer.start({ host: '0.0.0.0', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() }), ConfigError);
});

test('history with 10,000 tasks: the API pages through all of them, filters apply, bad paging is a 400', async (t) => {
  const { store, node } = await fixture(t);
  for (let i = 0; i < 10_000; i++) {
    const id = `task-${String(i).padStart(5, '0')}`;
    store.insertTask({ taskId: id, attempt: 1, inputSize: 0, inputSha256: '', spec: { image: 'img', command: ['true'], env: new Map(), network: 0, maxOutputBytes: 0, data: [] } }, [], 1_000 + i);
    store.appendUpdate({ taskId: id, attempt: 1, state: i % 10 === 0 ? TaskState.TASK_STATE_FAILED : TaskState.TASK_STATE_SUCCEEDED, message: '', atMs: 2_000 + i });
  }
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const base = `http://127.0.0.1:${m.port}`;
  let before: string | null = null;
  let count = 0;
  let pages = 0;
  do {
    const res = await fetch(`${base}/api/tasks?limit=200${before ? `&before=${before}` : ''}`);
    const page = (await res.json()) as { tasks: { taskId: string }[]; nextBefore: string | null };
    count += page.tasks.length;
    pages++;
    before = page.nextBefore;
  } while (before);
  assert.equal(count, 10_000);
  assert.equal(pages, 50);
  const failed = (await (await fetch(`${base}/api/tasks?state=failed&limit=200`)).json()) as { tasks: { state: string }[] };
  assert.equal(failed.tasks.length, 200);
  assert.ok(failed.tasks.every((r) => r.state === 'failed'));
  assert.equal((await fetch(`${base}/api/tasks?before=garbage`)).status, 400);
  assert.equal((await fetch(`${base}/api/tasks?limit=100000`)).status, 400);
});

test('hostile static and API paths get 404 or 400, never a file outside web/, and log nothing above debug', async (t) => {
  const { store, node } = await fixture(t);
  const logLines: string[] = [];
  const sink = new PassThrough();
  sink.on('data', (d: Buffer) => logLines.push(...d.toString().split('\n').filter(Boolean)));
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: createLogger({ level: 'debug', destination: sink }) });
  t.after(() => m.close());
  const pkg = await readFile(new URL('../../../package.json', import.meta.url), 'utf8');
  const marker = pkg.includes('"devDependencies"') ? '"devDependencies"' : '"dependencies"';
  // fetch() would normalise "..": send each path byte for byte with node:http.
  const get = (path: string) =>
    new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: m.port, path, headers: { host: `127.0.0.1:${m.port}` } }, (res) => {
        let body = '';
        res.setEncoding('latin1');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      });
      req.on('error', reject);
      req.end();
    });
  const hostile = [
    '/assets/../../package.json',
    '/assets/%00../../package.json',
    '/api/tasks/%E0%A4%A',
    '/api/tasks/%E0%A4%A/logs',
    '/assets/%2e%2e/%2e%2e/package.json',
    '/assets/..%2f..%2fpackage.json',
    '/assets/..%2F..%2Fpackage.json',
    '/assets/..%5c..%5cpackage.json',
    '/assets/..\\..\\package.json',
    '/assets/%252e%252e%252f%252e%252e%252fpackage.json',
    '/assets/%c0%ae%c0%ae/%c0%ae%c0%ae/package.json',
    '/assets/monitor.css%00.png',
    '/assets/%E0%A4%A',
    `/assets/${'a'.repeat(8000)}`,
    `/assets/${'../'.repeat(500)}package.json`,
    '/vendor/uplot/../../../package.json',
    '/vendor/uplot/..%2f..%2f..%2fpackage.json',
    '/vendor/socket.io/%2e%2e%2f%2e%2e%2f%2e%2e%2fpackage.json',
    '/assets/.',
    '/assets',
    '/assets/.hidden',
  ];
  const answers: { path: string; status: number; leaked: boolean }[] = [];
  for (const path of hostile) {
    const r = await get(path);
    answers.push({ path, status: r.status, leaked: r.body.includes(marker) });
  }
  const errorLines = logLines.filter((l) => (JSON.parse(l) as { level: number }).level >= 40);
  const escaped = answers.filter((a) => a.leaked || (a.status !== 400 && a.status !== 404)).length;
  // A path escapes if it got another status, leaked the file, or logged an error (capped at one each).
  recordHostile('monitor: hostile static/API paths (traversal, NUL, bad %-encoding, double encoding, backslashes, long paths)', Math.min(hostile.length, escaped + errorLines.length), hostile.length);
  for (const a of answers) {
    assert.ok(a.status === 400 || a.status === 404, `${a.path.slice(0, 80)}: status ${a.status}`);
    assert.ok(!a.leaked, `${a.path.slice(0, 80)}: the body holds package.json`);
  }
  assert.deepEqual(errorLines, [], 'hostile paths are logged at most at debug');
  assert.ok(logLines.some((l) => l.includes('monitor request refused')), 'they are still visible at debug level');
  // The static route itself still works.
  const css = await get('/assets/monitor.css');
  assert.equal(css.status, 200);
});

test('a Socket.IO client following thousands of task logs gets at most 16 at once', async (t) => {
  const { store, node } = await fixture(t);
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const client = io(`http://127.0.0.1:${m.port}`, { transports: ['websocket'], reconnection: false });
  t.after(() => client.close());
  await new Promise<void>((resolve, reject) => {
    client.on('status', () => resolve());
    client.on('connect_error', reject);
  });
  for (let i = 0; i < 5000; i++) client.emit('follow', { taskId: `t${i}`.padEnd(150, 'x') });
  // The server handles a connection's packets in order: once this answer is back, all follows were handled.
  await new Promise<void>((resolve) => { client.emit('follow', { taskId: 'last' }); setTimeout(resolve, 500); });
  const server = (m as unknown as { io: { sockets: { sockets: Map<string, { rooms: Set<string> }> } } }).io;
  const rooms = [...server.sockets.sockets.values()].map((s) => s.rooms.size);
  recordHostile('monitor: a client following 5,000 task logs', Math.max(...rooms) > 17 ? 1 : 0);
  assert.deepEqual(rooms, [17], 'its own room and 16 followed logs');
});

test('data cache: /api/cache, the cache push and /metrics come from the node\'s cache, behind the token', async (t) => {
  const { store, node } = await fixture(t);
  const dir = await mkdtemp(join(tmpdir(), 'hm-monitor-cache-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const { cache, ref } = await seededDataCache(t, dir);
  node.dataCache = cache;
  const token = 'monitor-token-0123456789';
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0, token }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const base = `http://127.0.0.1:${m.port}`;
  assert.equal((await fetch(`${base}/api/cache`)).status, 401, 'the cache panel needs the token like the rest of the API');
  assert.equal((await fetch(`${base}/metrics`)).status, 401);
  const auth = { authorization: `Bearer ${token}` };
  const res = await fetch(`${base}/api/cache`, { headers: auth });
  assert.equal(res.status, 200);
  const { cache: view } = (await res.json()) as { cache: CacheView };
  assert.equal(view.entryCount, 1);
  assert.deepEqual(
    { digest: view.entries[0]!.digest, kind: view.entries[0]!.kind, size: view.entries[0]!.sizeBytes, uses: view.entries[0]!.uses, inUse: view.entries[0]!.inUse },
    { digest: ref.digest, kind: 'file', size: ref.sizeBytes, uses: 2, inUse: false },
  );
  assert.deepEqual([view.hits, view.misses, view.hitRate, view.bytesDownloaded, view.budgetBytes], [1, 1, 0.5, ref.sizeBytes, 10 * 2 ** 20]);

  // A Socket.IO client gets the panel on connect, and again after a task change.
  const sock = io(base, { transports: ['websocket'], reconnection: false, auth: { token } });
  t.after(() => sock.close());
  const pushes: CacheView[] = [];
  sock.on('cache', (c: CacheView) => pushes.push(c));
  await new Promise<void>((resolve, reject) => {
    sock.on('cache', () => resolve());
    sock.on('connect_error', reject);
  });
  assert.equal(pushes[0]!.entries[0]!.digest, ref.digest);
  const lease = await cache.acquire(ref, 'task-c', new AbortController().signal);
  node.emit('task-updated', { taskId: 'task-c', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, message: '', atMs: Date.now() } as never);
  const deadline = Date.now() + 5000;
  while (!pushes.some((c) => c.entries[0]!.inUse) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  const inUse = pushes.find((c) => c.entries[0]!.inUse);
  assert.ok(inUse, 'a push after the task change shows the entry in use');
  assert.deepEqual([inUse.hits, inUse.entries[0]!.uses], [2, 3]);
  // Status pushes that change nothing in the cache do not resend it.
  const sent = pushes.length;
  node.emit('task-updated', { taskId: 'task-c', attempt: 1, state: TaskState.TASK_STATE_ACCEPTED, message: '', atMs: Date.now() } as never);
  await new Promise((r) => setTimeout(r, 600));
  assert.equal(pushes.length, sent, 'an unchanged cache is not pushed again');
  lease.release();

  const metrics = await (await fetch(`${base}/metrics`, { headers: auth })).text();
  const value = (name: string) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics)?.[1]);
  assert.equal(value('hivemind_data_cache_bytes'), ref.sizeBytes);
  assert.equal(value('hivemind_data_cache_entries'), 1);
  assert.equal(value('hivemind_data_cache_budget_bytes'), 10 * 2 ** 20);
  assert.equal(value('hivemind_data_cache_hits_total'), 2);
  assert.equal(value('hivemind_data_cache_misses_total'), 1);
  assert.equal(value('hivemind_data_cache_evictions_total'), 0);
  assert.equal(value('hivemind_data_downloaded_bytes_total'), ref.sizeBytes);
});

test('data cache: a node without one answers { cache: null }', async (t) => {
  const { store, node } = await fixture(t);
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const res = await fetch(`http://127.0.0.1:${m.port}/api/cache`);
  assert.deepEqual(await res.json(), { cache: null });
});

test('services: /api/services, the services push on connect and on a replica-status change, and the replica /metrics, behind the token', async (t) => {
  const { store, node } = await fixture(t);
  const running: ReplicaStatus = { healthy: true, restarts: 1, lastExit: 'exited with code 2', lastExitAtMs: 1_000, healthMessage: '', restartAtMs: 0, running: true };
  node.replicaList = [{ taskId: 'web-0', attempt: 1, service: 'web', index: 0, status: running }];
  node.gateway = { port: 7946, counters: { open: 1, relayed: 3, errors: 0, refused: { source: 0, key: 0, malformed: 0, timeout: 0, 'over-limit': 0 }, replicas: [{ taskId: 'web-0', attempt: 1, connections: 3, open: 1, bytesIn: 300, bytesOut: 9000 }] } };
  const token = 'monitor-token-0123456789';
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0, token }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const base = `http://127.0.0.1:${m.port}`;
  assert.equal((await fetch(`${base}/api/services`)).status, 401, 'the services panel needs the token like the rest of the API');
  const auth = { authorization: `Bearer ${token}` };
  const view = (await (await fetch(`${base}/api/services`, { headers: auth })).json()) as ServicesView;
  assert.deepEqual(view.gateway, { port: 7946, open: 1, relayed: 3, errors: 0, refused: 0 });
  assert.equal(view.replicas.length, 1);
  assert.deepEqual({ ...view.replicas[0]!, requestsPerSecond: undefined }, {
    taskId: 'web-0', attempt: 1, service: 'web', index: 0, state: 'running', healthy: true, healthMessage: '', restarts: 1,
    lastExit: 'exited with code 2', lastExitAtMs: 1_000, restartAtMs: null, pipe: { connections: 3, open: 1, bytesIn: 300, bytesOut: 9000 }, requestsPerSecond: undefined,
  });

  const sock = io(base, { transports: ['websocket'], reconnection: false, auth: { token } });
  t.after(() => sock.close());
  const pushes: ServicesView[] = [];
  await new Promise<void>((resolve, reject) => {
    sock.on('services', (v: ServicesView) => {
      pushes.push(v);
      resolve();
    });
    sock.on('connect_error', reject);
  });
  assert.equal(pushes[0]!.replicas[0]!.state, 'running');
  const sick = { taskId: 'web-0', attempt: 1, service: 'web', index: 0, status: { ...running, healthy: false, healthMessage: 'GET /: status 500' } };
  node.replicaList = [sick];
  node.emit('replica-status', sick);
  const deadline = Date.now() + 5000;
  while (!pushes.some((v) => v.replicas[0]?.healthy === false) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
  assert.equal(pushes.find((v) => v.replicas[0]?.healthy === false)?.replicas[0]?.healthMessage, 'GET /: status 500', 'pushed after the replica-status event');

  assert.equal((await fetch(`${base}/metrics`)).status, 401);
  const metrics = await (await fetch(`${base}/metrics`, { headers: auth })).text();
  assert.ok(metrics.includes('hivemind_replicas{service="web",replica="0",state="running",healthy="false"} 1\n'), metrics);
  assert.ok(metrics.includes('hivemind_replica_restarts_total{service="web",replica="0"} 1\n'));
  assert.ok(metrics.includes('hivemind_gateway_pipe_connections_total{service="web"} 3\n'));
  assert.ok(metrics.includes('hivemind_gateway_pipe_bytes_total{service="web",direction="out"} 9000\n'));
});

test("exec sessions: a task's detail lists them from the node's history, /metrics counts them", async (t) => {
  const { store, node } = await fixture(t);
  store.insertTask({ taskId: 'x1', attempt: 1, inputSize: 0, inputSha256: '', spec: { image: 'img', command: ['sleep', '60'], env: new Map(), network: 0, maxOutputBytes: 0, data: [] } }, [], 1_000);
  store.insertExecSession({ sessionId: 'a'.repeat(32), taskId: 'x1', attempt: 1, startedAt: 2_000, command: ['sh', '-c', 'echo hi'], tty: false });
  store.endExecSession('a'.repeat(32), { endedAt: 2_500, exitCode: 3, error: '' });
  store.insertExecSession({ sessionId: 'b'.repeat(32), taskId: 'x1', attempt: 1, startedAt: 3_000, command: ['sh'], tty: true });
  node.execCounters = { started: 2, refused: 5, active: 1 };
  const m = await MonitorServer.start({ host: '127.0.0.1', port: 0 }, { node, store, clock: systemClock, logger: silentLogger() });
  t.after(() => m.close());
  const { task } = (await (await fetch(`http://127.0.0.1:${m.port}/api/tasks/x1`)).json()) as { task: { execSessions: unknown[] } };
  assert.deepEqual(task.execSessions, [
    { startedAtMs: 2_000, command: ['sh', '-c', 'echo hi'], tty: false, endedAtMs: 2_500, exitCode: 3, error: '' },
    { startedAtMs: 3_000, command: ['sh'], tty: true, endedAtMs: null, exitCode: null, error: '' },
  ]);
  const metrics = await (await fetch(`http://127.0.0.1:${m.port}/metrics`)).text();
  assert.match(metrics, /^hivemind_worker_exec_sessions_started_total 2$/m);
  assert.match(metrics, /^hivemind_worker_exec_sessions_refused_total 5$/m);
  assert.match(metrics, /^hivemind_worker_exec_sessions_active 1$/m);
});
