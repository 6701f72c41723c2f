// The web monitor's HTTP API and Socket.IO pushes against a running worker process (with a real
// master and Docker): status, live task with its log, history, controls, metrics, and the guards.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { io, type Socket } from 'socket.io-client';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { freePort, waitFor } from '../helpers/cli-process.js';

const IMAGE = 'hivemind/busybox:1';
const CONTROL = { 'X-Hivemind-Monitor': '1', 'Content-Type': 'application/json' };

interface Status {
  node: { id: string; state: string; accepting: boolean; paused: boolean; problems: string[] };
  docker: { ok: boolean };
  running: { taskId: string; state: string; startedAtMs: number | null; limits: { memoryBytes: number } }[];
}
interface Row {
  taskId: string;
  state: string;
  outcome: { kind: string; exitCode: number; resultSha256: string } | null;
}
interface LogPush {
  taskId: string;
  text: string;
  dropped: number;
}

/** Collects every event of a socket so assertions can wait for "one that matches". */
function recorder(socket: Socket) {
  const events: { name: string; data: unknown }[] = [];
  socket.onAny((name: string, data: unknown) => events.push({ name, data }));
  return {
    events,
    waitFor<T>(name: string, pred: (d: T) => boolean, what: string, timeoutMs = 30_000): Promise<T> {
      return waitFor(what, () => events.find((e) => e.name === name && pred(e.data as T))?.data as T | undefined, timeoutMs, 50);
    },
  };
}

async function json<T>(res: Response): Promise<T> {
  const body = await res.text();
  assert.ok(res.headers.get('content-type')?.includes('json'), `JSON expected, got ${res.status} ${body}`);
  return JSON.parse(body) as T;
}

test('monitor API and Socket.IO against a running worker', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const port = await freePort();
  const cluster = await ProcessCluster.start({ workerArgs: ['--monitor-port', String(port)] });
  const base = `http://127.0.0.1:${port}`;
  const socket = io(base, { transports: ['websocket'], reconnection: false });
  try {
    await waitFor('the monitor to listen', async () => (await fetch(`${base}/healthz`).catch(() => undefined))?.status === 200);
    const rec = recorder(socket);
    await waitFor('the socket to connect', () => socket.connected || undefined);

    // Status: pushed on connect and served by the API; nothing secret in it.
    const pushed = await rec.waitFor<Status>('status', () => true, 'a status push on connect');
    const status = await json<Status>(await fetch(`${base}/api/status`));
    assert.equal(status.node.state, 'connected');
    assert.equal(status.node.id, pushed.node.id);
    assert.equal(status.docker.ok, true);
    assert.deepEqual(status.node.problems, []);
    const identity = JSON.parse(readFileSync(join(cluster.home, 'worker', 'identity.json'), 'utf8')) as { nodeCredential?: string; credential?: string };
    const credential = identity.nodeCredential ?? identity.credential;
    assert.ok(credential, 'the identity file holds a credential to look for');
    const everything = JSON.stringify(status) + JSON.stringify(pushed);
    assert.ok(!everything.includes(credential!), 'the node credential never reaches the page');
    assert.ok(!everything.includes(cluster.adminToken), 'the admin token never reaches the page');
    assert.equal((await fetch(`${base}/readyz`)).status, 200);
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    assert.equal(root.status, 302);
    assert.equal(root.headers.get('location'), '/monitor.html');

    // A task: running with its limits, its log followed live, then in the history with its outcome.
    const sub = await cluster.cli(['submit', '--image', IMAGE, '--memory', '64m', '--env', 'SECRET_VALUE=hunter2', '--',
      'sh', '-c', 'for i in 1 2 3 4 5 6; do echo "tick $i"; sleep 0.5; done; echo done > /output/x']);
    assert.equal(sub.code, 0, sub.stderr);
    const taskId = sub.stdout.trim();
    socket.emit('follow', { taskId });
    const running = await rec.waitFor<Status>('status', (s) => s.running.some((r) => r.taskId === taskId && r.state === 'running'), 'the task running in a status push');
    const view = running.running.find((r) => r.taskId === taskId)!;
    assert.equal(view.limits.memoryBytes, 64 * 1024 * 1024);
    assert.ok(view.startedAtMs! > 0);
    await rec.waitFor<LogPush>('log', (l) => l.taskId === taskId && /tick \d/.test(l.text), 'log lines of the followed task');
    const detail = await json<{ task: { env: string[]; state: string } }>(await fetch(`${base}/api/tasks/${taskId}`));
    assert.deepEqual(detail.task.env, ['SECRET_VALUE'], 'env names are shown');
    assert.ok(!JSON.stringify(detail).includes('hunter2'), 'env values are not');
    const finished = await rec.waitFor<Row>('task', (r) => r.taskId === taskId && r.state === 'succeeded', 'the task succeeded (task push)');
    assert.equal(finished.outcome?.kind, 'exited');
    assert.equal(finished.outcome?.exitCode, 0);
    const logs = rec.events.filter((e) => e.name === 'log').map((e) => (e.data as LogPush).text).join('');
    for (let i = 1; i <= 6; i++) assert.match(logs, new RegExp(`tick ${i}\\n`), 'every line arrived, in one piece');
    const page = await json<{ tasks: Row[]; nextBefore: string | null }>(await fetch(`${base}/api/tasks?limit=10`));
    assert.equal(page.tasks[0]?.taskId, taskId);
    assert.equal(page.tasks[0]?.state, 'succeeded');
    const masterView = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { outcome: { resultSha256: string } };
    assert.equal(page.tasks[0]?.outcome?.resultSha256, masterView.outcome.resultSha256);
    assert.match(await (await fetch(`${base}/api/tasks/${taskId}/logs`)).text(), /tick 6/);
    assert.equal((await json<{ tasks: Row[] }>(await fetch(`${base}/api/tasks?state=failed`))).tasks.length, 0);
    assert.equal((await fetch(`${base}/api/tasks?state=bogus`)).status, 400);
    assert.equal((await fetch(`${base}/api/tasks/nope`)).status, 404);

    // Samples and contribution points arrive every report interval (1 s here).
    await rec.waitFor('sample', () => true, 'a resource sample push');
    await rec.waitFor<{ total: number }>('contribution', (c) => c.total > 0, 'a contribution push');
    const res = await json<{ samples: { cpuPercent: number }[] }>(await fetch(`${base}/api/resources`));
    assert.ok(res.samples.length > 0);

    // Pause: the master places nothing here; resume: the queued task runs.
    const paused = await json<{ status: Status }>(await fetch(`${base}/api/pause`, { method: 'POST', headers: CONTROL, body: '{}' }));
    assert.equal(paused.status.node.paused, true);
    assert.equal(paused.status.node.accepting, false);
    const queued = (await cluster.cli(['submit', '--image', IMAGE, '--', 'true'])).stdout.trim();
    await new Promise((r) => setTimeout(r, 2_500));
    const q = JSON.parse((await cluster.cli(['get', queued, '--json'])).stdout) as { state: string };
    assert.equal(q.state, 'queued', 'a paused node gets no task: it stays QUEUED');
    await fetch(`${base}/api/resume`, { method: 'POST', headers: CONTROL, body: '{}' });
    const w = await cluster.cli(['wait', queued]);
    assert.equal(w.code, 0, w.stdout + w.stderr);

    // Cancel from the monitor.
    const long = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '60'])).stdout.trim();
    await rec.waitFor<Status>('status', (s) => s.running.some((r) => r.taskId === long && r.state === 'running'), 'the long task running');
    const cancel = await fetch(`${base}/api/tasks/${long}/cancel`, { method: 'POST', headers: CONTROL, body: '{}' });
    assert.equal(cancel.status, 200, await cancel.text());
    await rec.waitFor<Row>('task', (r) => r.taskId === long && r.state === 'cancelled', 'the cancelled task');
    assert.equal((await fetch(`${base}/api/tasks/${long}/cancel`, { method: 'POST', headers: CONTROL, body: '{}' })).status, 404);

    // Metrics in Prometheus text format.
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /^hivemind_worker_tasks_total\{state="succeeded",outcome="exited"\} 2$/m);
    assert.match(metrics, /^hivemind_worker_tasks_total\{state="cancelled",outcome="cancelled"\} 1$/m);
    assert.match(metrics, /^hivemind_worker_reports_total \d+$/m);
    assert.match(metrics, /^hivemind_worker_task_duration_seconds_count\{outcome="exited"\} 2$/m);
    assert.match(metrics, /^hivemind_worker_result_upload_bytes_total \d+$/m);
    assert.match(metrics, /^hivemind_worker_memory_total_bytes \d+/m);

    // Guards: controls need the header and the same origin; the Host must be this server.
    assert.equal((await fetch(`${base}/api/pause`, { method: 'POST' })).status, 403);
    assert.equal((await fetch(`${base}/api/pause`, { method: 'POST', headers: { ...CONTROL, Origin: 'http://evil.example' } })).status, 403);
    const status2 = await json<Status>(await fetch(`${base}/api/status`));
    assert.equal(status2.node.paused, false, 'the refused requests changed nothing');
    const rebinding = await new Promise<number>((resolve, reject) => {
      // fetch() will not let a script set Host; a raw request can (as a DNS-rebinding page would).
      import('node:http').then(({ request }) => {
        const r = request({ host: '127.0.0.1', port, path: '/api/status', headers: { host: `evil.example:${port}` } }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        });
        r.on('error', reject);
        r.end();
      }, reject);
    });
    assert.equal(rebinding, 421);
    const csp = (await fetch(`${base}/api/status`)).headers.get('content-security-policy') ?? '';
    assert.match(csp, /default-src 'self'/);
    assert.match(csp, /frame-ancestors 'none'/);
    // Secrets stay out of the logs too.
    for (const [who, out] of [['worker', cluster.worker!.output], ['master', cluster.master.output]] as const) {
      assert.ok(!out.includes(credential!), `the node credential is not in the ${who} log`);
      assert.ok(!out.includes(cluster.adminToken), `the admin token is not in the ${who} log`);
      assert.ok(!out.includes('hunter2'), `task env values are not in the ${who} log`);
    }
    const foreign = io(base, { transports: ['websocket'], reconnection: false, extraHeaders: { Origin: 'http://evil.example' } });
    const err = await new Promise<Error>((resolve) => foreign.on('connect_error', resolve));
    foreign.close();
    assert.ok(err, 'a cross-site socket is refused');
  } finally {
    socket.close();
    await cluster.close();
  }
});

test('a monitor port already in use is a clear message; the worker runs on without the monitor', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const { createServer } = await import('node:net');
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  const cluster = await ProcessCluster.start({ workerArgs: ['--monitor-port', String(port)] });
  try {
    assert.match(cluster.worker!.output, new RegExp(`monitor: port ${port} on 127\\.0\\.0\\.1 is already in use .*--monitor-port`));
    const r = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'true']);
    assert.equal(r.code, 0, 'the worker still runs tasks');
  } finally {
    await cluster.close();
    blocker.close();
  }
});
