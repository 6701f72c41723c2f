// The master's operations listener in a real Master (real SQLite or PostgreSQL, real sockets on loopback):
// readiness through its life, an injected readiness condition, and the admin token on /metrics
// when the listener is not on loopback (decided by injection: test traffic stays on loopback).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Master } from '../../src/master/master.js';
import type { Readiness } from '../../src/master/metrics/ops-http.js';
import { masterStoreOption } from '../helpers/test-store.js';

test('a master is not ready before start, ready after, not ready while closing; an injected condition and the admin token apply', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'hm-ops-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  let standby: Readiness = { ready: true };
  const master = await Master.create(
    { listenAddress: '127.0.0.1:0', gatewayListen: 'off', metricsListen: '127.0.0.1:0', dataDir, shutdownGraceMs: 200, ...masterStoreOption() },
    { readiness: () => standby, metricsNeedToken: true },
  );
  t.after(() => master.close());
  assert.deepEqual(master.readiness(), { ready: false, reason: 'starting' });
  assert.equal(master.metricsUrl, undefined);
  await master.start();
  const url = master.metricsUrl!;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.equal((await fetch(`${url}/readyz`)).status, 200);

  standby = { ready: false, reason: 'standby: another master holds the lease' };
  const r = await fetch(`${url}/readyz`);
  assert.deepEqual([r.status, await r.text()], [503, 'not ready: standby: another master holds the lease\n']);
  standby = { ready: true };

  assert.equal((await fetch(`${url}/metrics`)).status, 401);
  const token = (await readFile(master.adminTokenPath, 'utf8')).trim();
  const m = await fetch(`${url}/metrics`, { headers: { authorization: `Bearer ${token}` } });
  assert.equal(m.status, 200);
  const body = await m.text();
  assert.match(body, /^hivemind_master_tasks_queued 0$/m);
  assert.match(body, /^hivemind_master_nodes\{state="online"\} 0$/m);
  assert.doesNotMatch(body, /hivemind_gateway_/, 'no gateway runs: no gateway series');

  const closing = master.close();
  assert.deepEqual(master.readiness(), { ready: false, reason: 'shutting down' });
  await closing;
  await assert.rejects(fetch(`${url}/healthz`), 'the listener is closed with the master');
});

test('a Master built in a program has no operations listener unless asked', async (t) => {
  const dataDir = await mkdtemp(join(tmpdir(), 'hm-ops-'));
  t.after(() => rm(dataDir, { recursive: true, force: true }));
  const master = await Master.create({ listenAddress: '127.0.0.1:0', gatewayListen: 'off', dataDir, shutdownGraceMs: 200, ...masterStoreOption() });
  t.after(() => master.close());
  await master.start();
  assert.equal(master.metricsUrl, undefined);
  assert.deepEqual(master.readiness(), { ready: true });
});
