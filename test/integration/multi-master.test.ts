// Several master addresses with real processes: a real master, a fake standby (answers every call
// UNAVAILABLE "standby master: …") and a dead address. The CLI uses the first that answers as
// active; a worker given [dead, standby, live] connects to live; a worker on [live, standby] whose
// master is killed tries the standby, and comes back to its master when it is up again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { freePort, waitFor } from '../helpers/cli-process.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { requireDocker } from '../helpers/requirements.js';
import { FakeStandbyMaster } from '../helpers/standby-master.js';

test('several masters: the CLI and the worker skip a dead and a standby master, and come back to the live one', { timeout: 180_000 }, async (t) => {
  if (!requireDocker(t)) return;
  const standby = await FakeStandbyMaster.start();
  t.after(() => standby.close());
  const dead = `127.0.0.1:${await freePort()}`;
  const cluster = await ProcessCluster.start();
  t.after(() => cluster.close());
  const live = cluster.address;

  // The CLI: [standby, dead, live] works; [standby, dead] says why each failed.
  const ok = await cluster.cli(['nodes', '--json', '--master', `${standby.address},${dead},${live}`]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((JSON.parse(ok.stdout) as unknown[]).length, 1);
  assert.ok(standby.calls >= 1, 'the standby was asked first');
  const none = await cluster.cli(['nodes', '--master', `${standby.address},${dead}`]);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no active master among 2: .*standby master: the other master is active.*; 127\.0\.0\.1:\d+: /);

  // A worker given [dead, standby, live] connects to live.
  const w = await cluster.addWorker({ workerArgs: ['--master', `${dead},${standby.address},${live}`] });
  assert.match(w.daemon.output, new RegExp(`"master":"${live}"[^\\n]*"connected to the master"|"connected to the master"[^\\n]*"master":"${live}"`));

  // Its master is killed: it tries the others (the standby refuses), and is back once the master is.
  const before = standby.calls;
  await cluster.master.stop('SIGKILL');
  await waitFor('the worker to try the standby', () => standby.calls > before, 30_000, 100);
  await cluster.restartMaster();
  await waitFor('the worker back on the live master', async () => {
    const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout || '[]') as { nodeId: string; online: boolean }[];
    return nodes.some((n) => n.nodeId === w.nodeId && n.online) || undefined;
  }, 60_000, 500);
});
