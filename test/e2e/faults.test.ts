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
