// gVisor through real processes: a node started with --isolation gvisor offers only gVisor (shown
// in `hivemind nodes`), a runc task waits with a reason, and a gVisor task survives a kill -9 of
// its worker: the restarted worker reattaches to the runsc container and delivers the result once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireGvisor } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordScenario } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/busybox:1';
const containersOf = (taskId: string): string[] =>
  execFileSync('docker', ['ps', '-aq', '--filter', `label=io.hivemind.task-id=${taskId}`]).toString().split('\n').filter(Boolean);

interface TaskJson { state: string; attempt: number; queueReason: string; events: { state: string }[] }

test('--isolation gvisor node: offers gVisor only; kill -9 of the worker mid-task, the restarted worker reattaches to the runsc container and delivers the result once', async (t) => {
  if (!requireGvisor(t)) return;
  const workerArgs = ['--isolation', 'gvisor'];
  const cluster = await ProcessCluster.start({ reportInterval: '3s', workerArgs });
  const info = async (id: string) => JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as TaskJson;
  try {
    const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { facts: { isolations: string[] } }[];
    assert.deepEqual(nodes[0]?.facts.isolations, ['gvisor']);
    assert.match((await cluster.cli(['nodes'])).stdout, /ISOLATION[\s\S]*\bgvisor\b/);

    // A task that insists on runc never lands on this node: it waits, saying why.
    const runcTask = (await cluster.cli(['submit', '--isolation', 'runc', '--image', IMAGE, '--', 'true'])).stdout.trim();
    await waitFor('the runc task\'s queue reason', async () => /no accepting node offers runc isolation/.test((await info(runcTask)).queueReason) || undefined, 15_000, 200);

    const taskId = (await cluster.cli(['submit', '--isolation', 'gvisor', '--image', IMAGE, '--', 'sh', '-c', 'echo before; dmesg > /tmp/k; grep -q gVisor /tmp/k && echo in-gvisor; sleep 2; echo while-down; sleep 5; echo after; echo survived > /output/r.txt'])).stdout.trim();
    await waitFor('the task running', async () => (await info(taskId)).state === 'running' || undefined, 60_000, 200);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(execFileSync('docker', ['inspect', '-f', '{{.HostConfig.Runtime}}', containersOf(taskId)[0]!]).toString().trim(), 'runsc');
    await cluster.worker!.stop('SIGKILL');
    assert.equal(containersOf(taskId).length, 1, 'the sandbox outlives the worker');

    await cluster.startWorker({ workerArgs });
    const w = await cluster.cli(['wait', taskId], 120_000);
    const i = await info(taskId);
    const dir = join(cluster.home, `result-${taskId}`);
    const r = w.code === 0 ? await cluster.cli(['result', taskId, '-o', `${dir}.tar.gz`, '--extract', dir]) : undefined;
    const delivered = r?.code === 0 && readFileSync(join(dir, 'r.txt'), 'utf8') === 'survived\n';
    const stored = cluster.master.output.split('\n').filter((l) => l.includes('"result stored"') && l.includes(taskId)).length;
    recordScenario({ name: 'gVisor: kill -9 mid-task, runsc container still running', faults: 1, submitted: 1, delivered: delivered ? 1 : 0, lost: delivered ? 0 : 1, duplicated: stored > 1 ? 1 : 0 });
    assert.equal(w.code, 0, `${w.stdout}${w.stderr}\nworker:\n${cluster.worker?.output}`);
    assert.ok(delivered, `result not delivered: ${JSON.stringify(i)}`);
    assert.equal(stored, 1, 'the master stored the result once');
    assert.equal(i.attempt, 1, 'not run again');
    assert.match(cluster.worker!.output, /reattached to the container of an earlier run/);
    let log = '';
    await waitFor('the whole log', async () => /after/.test((log = (await cluster.cli(['logs', taskId])).stdout)) || undefined, 10_000, 200);
    assert.equal(log, 'before\nin-gvisor\nwhile-down\nafter\n', 'the whole log, each line once');
    await waitFor('the container removed', () => containersOf(taskId).length === 0 || undefined, 30_000, 250);
    assert.equal((await info(runcTask)).state, 'queued', 'the runc task still waits');
    await cluster.cli(['cancel', runcTask]);
  } finally {
    await cluster.close();
  }
});
