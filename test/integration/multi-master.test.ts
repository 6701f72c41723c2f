// Several master addresses with real processes: a real master, a fake standby (answers every call
// UNAVAILABLE "standby master: …") and a dead address. The CLI uses the first that answers as
// active; a worker given [dead, standby, live] connects to live; a worker on [live, standby] whose
// master is killed tries the standby, and comes back to its master when it is up again. Then two
// real masters on one PostgreSQL store (both serving: the lease is the standby helper's): a worker
// moves from A to B when A is killed, and back to A when B dies.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CliDaemon, fileExists, freePort, runCli, waitFor } from '../helpers/cli-process.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { requireDocker } from '../helpers/requirements.js';
import { FakeStandbyMaster } from '../helpers/standby-master.js';
import { twoMasters } from '../helpers/two-masters.js';

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

/** `hivemind master start` on `address`, its data dir under `home`, on the shared store. */
function startMaster(home: string, name: string, address: string, store: string, env: NodeJS.ProcessEnv): CliDaemon {
  return new CliDaemon(
    ['master', 'start', '--listen', address, '--data-dir', join(home, name), '--store', store, '--report-interval', '1s', '--lease', '2s'],
    { ...env, HIVEMIND_GATEWAY_LISTEN: '127.0.0.1:0', HIVEMIND_METRICS_LISTEN: '127.0.0.1:0' },
  );
}

/** The masters the worker logged "connected to the master" with, in order. */
function connections(worker: CliDaemon): string[] {
  const out: string[] = [];
  for (const line of worker.output.split('\n')) {
    if (!line.includes('"connected to the master"')) continue;
    try {
      out.push((JSON.parse(line) as { master: string }).master);
    } catch {
      // a torn line; the next read has it whole
    }
  }
  return out;
}

test('two masters on one PostgreSQL store, one a standby: a worker on A moves to B when A is killed and B takes over, and back to A when B dies later', { timeout: 240_000 }, async (t) => {
  const fx = await twoMasters(t, 'hm-2masters-');
  if (!fx) return;
  const { store, home, procs, env, a, b } = fx;
  let masterA = startMaster(home, 'a', a, store, env);
  procs.push(masterA);
  await waitFor('master A\'s admin token', () => fileExists(join(home, 'a', 'admin.token')) || undefined);
  // One store, one admin token: B takes A's (as masters sharing a store are set up).
  mkdirSync(join(home, 'b'), { recursive: true });
  copyFileSync(join(home, 'a', 'admin.token'), join(home, 'b', 'admin.token'));
  const adminToken = readFileSync(join(home, 'a', 'admin.token'), 'utf8').trim();
  const cli = (master: string, args: string[]) => runCli([...args, '--master', master], { ...env, HIVEMIND_ADMIN_TOKEN: adminToken });
  await waitFor('master A to answer', async () => (await cli(a, ['nodes', '--json'])).code === 0 || undefined);
  const masterB = startMaster(home, 'b', b, store, env);
  procs.push(masterB);
  // A holds the lease: B is a standby and refuses, with the message that sends clients on.
  let lastB = '';
  await waitFor('master B to answer as a standby', async () => {
    lastB = (await cli(b, ['nodes', '--json'])).stderr;
    return /standby master: \S+ is active/.test(lastB) || undefined;
  }, 60_000).catch((err: unknown) => {
    throw new Error(`${(err as Error).message}; the CLI last said: ${lastB.slice(-500)}; master B's output: ${masterB.output.slice(-2000)}`);
  });

  const tok = await cli(a, ['token', 'create']);
  assert.equal(tok.code, 0, tok.stderr);
  const worker = new CliDaemon(
    ['worker', 'start', '--master', `${a},${b}`, '--token', tok.stdout.trim(), '--data-dir', join(home, 'worker'), '--report-interval', '1s', '--max-tasks', '1'],
    { ...env, HIVEMIND_GATEWAY_PORT: '0' },
  );
  procs.push(worker);
  const online = (master: string) => async () => {
    if (worker.child.exitCode !== null) throw new Error(`worker exited: ${worker.output}`);
    const nodes = JSON.parse((await cli(master, ['nodes', '--json'])).stdout || '[]') as { online: boolean }[];
    return nodes.some((n) => n.online) || undefined;
  };
  await waitFor('the worker on A', () => connections(worker).at(-1) === a || undefined, 30_000, 100);

  await masterA.stop('SIGKILL');
  await waitFor('the worker on B', () => connections(worker).at(-1) === b || undefined, 30_000, 100);
  await waitFor('B lists the node online', online(b), 30_000, 300);

  masterA = startMaster(home, 'a', a, store, env);
  procs.push(masterA);
  await waitFor('master A to answer again, as a standby', async () => /standby master/.test((await cli(a, ['nodes', '--json'])).stderr) || undefined);
  await masterB.stop('SIGKILL');
  await waitFor('the worker on A again', () => connections(worker).at(-1) === a || undefined, 30_000, 100);
  await waitFor('A lists the node online', online(a), 30_000, 300);
  assert.deepEqual(connections(worker), [a, b, a], 'one connection to each master in turn, the same node throughout');
  assert.equal((worker.output.match(/"registered with the master"/g) ?? []).length, 1, 'enrolled once: the credential works on both masters');
});
