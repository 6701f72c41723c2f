// Fault scenarios with real processes and real Docker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';

const IMAGE = 'hivemind/busybox:1';

const containersOf = (taskId: string): string[] =>
  execFileSync('docker', ['ps', '-aq', '--filter', `label=io.hivemind.task-id=${taskId}`]).toString().split('\n').filter(Boolean);
const volumesOf = (taskId: string): string[] =>
  execFileSync('docker', ['volume', 'ls', '-q', '--filter', `label=io.hivemind.task-id=${taskId}`]).toString().split('\n').filter(Boolean);

test('kill -9 of the worker mid-task: the restarted worker settles the task and removes its leftovers', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  try {
    const taskId = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '120'])).stdout.trim();
    await waitFor('the task running', async () => {
      const g = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { state: number };
      return g.state === 5 || undefined;
    }, 60_000, 200);
    await cluster.worker!.stop('SIGKILL');
    assert.equal(containersOf(taskId).length, 1, 'a killed worker leaves its container behind');
    assert.ok(volumesOf(taskId).length >= 1, 'and its volumes');

    await cluster.startWorker();
    await waitFor('the leftovers removed', () => (containersOf(taskId).length === 0 && volumesOf(taskId).length === 0) || undefined, 60_000, 250);
    // The task does not stay "running" forever at the master: it ends with the reason.
    const info = await waitFor('the task settled', async () => {
      const g = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { state: number; outcome?: { message: string } };
      return g.state >= 7 ? g : undefined;
    }, 60_000, 250);
    assert.match(info.outcome?.message ?? '', /restarted while this task was running/);
    assert.deepEqual(readdirSync(join(cluster.home, 'worker', 'spool')), [], 'no spool debris');
    // And the node keeps serving.
    const ok = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'true']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  } finally {
    await cluster.close();
  }
});

test('the master down for a while: tasks go on, their updates and results wait and arrive once', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  try {
    const ids: string[] = [];
    for (let i = 0; i < 2; i++) {
      ids.push((await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', `sleep 4; echo result-${i} > /output/r.txt`])).stdout.trim());
    }
    await waitFor('both tasks running', async () => {
      const states = await Promise.all(ids.map(async (id) => (JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as { state: number }).state));
      return states.every((s) => s === 5) || undefined;
    }, 60_000, 200);
    await cluster.master.stop('SIGTERM');
    // The tasks finish while the master is away (4 s of work, 10 s of absence).
    await new Promise((r) => setTimeout(r, 10_000));
    assert.equal(cluster.worker!.child.exitCode, null, 'the worker keeps running');
    await cluster.restartMaster();
    for (const [i, id] of ids.entries()) {
      const w = await cluster.cli(['wait', id], 90_000);
      assert.equal(w.code, 0, `${w.stdout}${w.stderr}\nworker:\n${cluster.worker!.output}`);
      const out = join(cluster.home, `r${i}.tar.gz`);
      const r = await cluster.cli(['result', id, '-o', out, '--extract', join(cluster.home, `r${i}`)]);
      assert.equal(r.code, 0, r.stderr);
      const info = JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as { attempt: number; events: { state: number; message: string; attempt: number }[] };
      assert.equal(info.attempt, 1, `not run a second time: ${JSON.stringify(info.events)}\nmaster:\n${cluster.master.output}`);
      assert.equal(info.events.filter((e) => e.state === 7).length, 1, 'one terminal update, not a duplicate');
    }
    assert.match(cluster.worker!.output, /lost the master; reconnecting/);
  } finally {
    await cluster.close();
  }
});
