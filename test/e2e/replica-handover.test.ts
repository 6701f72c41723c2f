// The handover of a service replica between worker processes (real master, real Docker): worker
// A is paused from its monitor (or stopped with SIGTERM: a drain), and the replica moves to
// worker B with no moment where the service has no healthy replica: `service get` (polled every
// 200 ms) never shows 0 healthy and every request through the gateway meanwhile is answered.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster, registeredNodeId } from '../helpers/process-cluster.js';
import { freePort, waitFor } from '../helpers/cli-process.js';
import { ServiceClient } from '../../src/client/service-client.js';
import { TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ServiceInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';

const IMAGE = 'hivemind/busybox:1';
const CONTROL = { 'X-Hivemind-Monitor': '1', 'Content-Type': 'application/json' };
const HTTPD = 'mkdir -p /tmp/www && echo ok > /tmp/www/health && exec busybox httpd -f -p 8000 -h /tmp/www';

type Leave = (cluster: ProcessCluster, monitorPort: number) => Promise<void>;

async function handover(t: TestContext, leave: Leave): Promise<ProcessCluster> {
  const monitorPort = await freePort();
  // A long handover wait on A: its replica stopping early can only be the master's handover.
  const cluster = await ProcessCluster.start({ workerArgs: ['--monitor-port', String(monitorPort), '--handover-wait', '2m'] });
  const services = ServiceClient.connect(cluster.address, cluster.adminToken);
  t.after(async () => {
    services.close();
    await cluster.close();
  });
  const nodeA = await waitFor('worker A registered', () => registeredNodeId(cluster.worker!));
  const created = await cluster.cli(['service', 'create', 'web', '--image', IMAGE, '--port', '8000', '--health', '/health', '--public', '--grace', '2s', '--', 'sh', '-c', HTTPD]);
  assert.equal(created.code, 0, created.stdout + created.stderr);
  const healthyOn = (s: ServiceInfo, node: string) => s.replicaList.some((r) => r.nodeId === node && r.state === TaskState.TASK_STATE_RUNNING && r.status?.healthy && !r.stopping);
  await waitFor('the replica healthy on worker A', async () => healthyOn(await services.get('web'), nodeA) || undefined, 60_000, 200);
  const b = await cluster.addWorker();
  const gateway = await waitFor('the gateway URL', () => cluster.gatewayUrl());
  const url = `${gateway.replace(/\/+$/, '')}/s/web/health`;
  assert.equal((await fetch(url)).status, 200);

  const healthyCounts: number[] = [];
  const failures: string[] = [];
  let polling = true;
  const poll = (async () => {
    while (polling) {
      healthyCounts.push((await services.get('web')).healthy);
      const res = await fetch(url).catch((err: unknown) => err as Error);
      if (res instanceof Error) failures.push(res.message);
      else if (res.status !== 200) failures.push(`${res.status} ${await res.text()}`);
      else await res.arrayBuffer();
      await new Promise((r) => setTimeout(r, 200));
    }
  })();
  try {
    await leave(cluster, monitorPort);
    await waitFor('the replica moved to worker B, the one on A ended', async () => {
      const s = await services.get('web');
      return (healthyOn(s, b.nodeId) && s.replicaList.length === 1) || undefined;
    }, 90_000, 200);
  } finally {
    polling = false;
    await poll;
  }
  assert.ok(healthyCounts.length >= 5, `polled ${healthyCounts.length} times`);
  assert.ok(healthyCounts.every((n) => n >= 1), `service get never showed 0 healthy: ${healthyCounts.join(',')}`);
  assert.deepEqual(failures, [], 'every request through the gateway was answered by a replica');
  return cluster;
}

test('a paused worker hands its replica over to the other worker: never 0 healthy, every gateway request answered', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await handover(t, async (_c, monitorPort) => {
    const paused = await fetch(`http://127.0.0.1:${monitorPort}/api/pause`, { method: 'POST', headers: CONTROL, body: '{}' });
    assert.equal(paused.status, 200, await paused.text());
  });
  const gone = await cluster.cli(['service', 'rm', 'web', '--wait']);
  assert.equal(gone.code, 0, gone.stdout + gone.stderr);
});

test('a draining worker (SIGTERM) hands its replica over and exits once it is handed over, well before its handover wait', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  let stopped = 0;
  const cluster = await handover(t, async (c) => {
    stopped = Date.now();
    c.worker!.child.kill('SIGTERM');
  });
  const a = cluster.worker!.child;
  await waitFor('worker A to exit', () => (a.exitCode !== null ? true : undefined), 60_000, 100);
  assert.equal(a.exitCode, 0, cluster.worker!.output.slice(-2000));
  assert.ok(Date.now() - stopped < 60_000, `exited after ${Date.now() - stopped} ms: the master handed the replica over, not the 2 min handover wait`);
  const gone = await cluster.cli(['service', 'rm', 'web', '--wait']);
  assert.equal(gone.code, 0, gone.stdout + gone.stderr);
});
