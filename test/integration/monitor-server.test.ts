// The monitor server in-process against a fake node and a real SQLite store: token mode (page,
// API, Socket.IO), a busy port, and a fast history with 10,000 tasks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { createServer } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { io } from 'socket.io-client';
import { MonitorPortInUseError, MonitorServer } from '../../src/monitor/monitor-server.js';
import type { MonitoredNode } from '../../src/monitor/monitored-node.js';
import { WorkerStore } from '../../src/worker/store/worker-store.js';
import type { WorkerEvents } from '../../src/worker/worker.js';
import { TaskState, type TunnelStatus } from '../../src/protocol/gen/hivemind/v1/common.js';
import { silentLogger } from '../../src/common/logger.js';
import { systemClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';

class FakeNode extends EventEmitter<WorkerEvents> implements MonitoredNode {
  nodeId = 'node-1';
  state = 'connected';
  stateReason: string | undefined = undefined;
  isPaused = false;
  startedAt = Date.now();
  hostFacts = { hostname: 'box', os: 'linux', osRelease: 'Debian 12', arch: 'x64', cpuCores: 2, cpuModel: 'cpu', memoryBytes: 1 << 30, diskBytes: 1 << 30, gpus: [], dockerVersion: '20.10' };
  budget = { maxTasks: 2, cpus: 2, memoryBytes: 1 << 30, gpuIndexes: [], taskDefaults: { cpus: 1, memoryBytes: 1 << 28 } };
  options = { masterAddress: '10.8.0.1:7070', name: 'box', workerVersion: '9.9.9' };
  tunnel: TunnelStatus | undefined = {
    interface: 'hivemind0', address: '10.8.0.2/24', masterEndpoint: '192.0.2.1:51820', latestHandshakeMs: Date.now() - 400_000,
    rxBytes: 10, txBytes: 20, state: 'stale', implementation: 'userspace',
  };
  get accepting() {
    return !this.isPaused;
  }
  freeCapacity() {
    return { cpus: 2, memoryBytes: 1 << 30, gpuIndexes: [], taskSlots: 2 };
  }
  runningTasks() {
    return [];
  }
  pause() {
    this.isPaused = true;
  }
  resume() {
    this.isPaused = false;
  }
  cancelTask() {
    return false;
  }
  async tunnelStatus() {
    return this.tunnel;
  }
}

async function fixture(t: { after(fn: () => unknown): void }) {
  const dir = await mkdtemp(join(tmpdir(), 'hm-monitor-'));
  const store = WorkerStore.open(join(dir, 'worker.db'));
  t.after(async () => {
    store.close();
    await rm(dir, { recursive: true, force: true });
  });
  return { store, node: new FakeNode() };
}

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
    store.insertTask({ taskId: id, attempt: 1, inputSize: 0, inputSha256: '', spec: { image: 'img', command: ['true'], env: new Map(), maxOutputBytes: 0 } }, [], 1_000 + i);
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
