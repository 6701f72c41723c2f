// End to end on Podman: a real master and a real worker process started with --engine-socket on
// Podman's Docker-compatible API, rootful, and rootless with the worker itself running as the
// ordinary user hmpodman (no root daemon and no root worker). Each runs a task round trip (submit,
// logs, result archive fetched and checked); the rootless node on this cgroup v1 host enforces no
// limits, so a task with a memory limit waits with its queue reason instead of running unbounded.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chownSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { execFileSync, spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ProcessCluster, type ClusterOptions } from '../helpers/process-cluster.js';
import { CLI, waitFor } from '../helpers/cli-process.js';
import { engineTarget, requireEngine, type EngineName } from '../helpers/engines.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/busybox:1';

interface NodeJson {
  online: boolean;
  facts?: { engine: string; unenforcedLimits: string[]; isolations: string[]; allowsEgress: boolean };
}

/** A worker of `name`: rootful as this (root) user; rootless as the engine's own user, in a data dir it owns. */
function workerOn(name: EngineName): { opts: ClusterOptions; cleanup(): void } {
  const target = engineTarget(name);
  const args = ['--engine-socket', `unix://${target.socketPath}`, '--no-services'];
  if (!target.user) return { opts: { workerArgs: args }, cleanup: () => undefined };
  const home = mkdtempSync(join(tmpdir(), 'hm-e2e-rootless-'));
  const uid = Number(execFileSync('id', ['-u', target.user]).toString().trim());
  const gid = Number(execFileSync('id', ['-g', target.user]).toString().trim());
  chownSync(home, uid, gid);
  return {
    opts: {
      workerUser: target.user,
      workerDataDir: join(home, 'worker'),
      // An ordinary user has no loop devices to bound /output with, and rootless Podman on cgroup
      // v1 enforces no limit: the two documented opt-ins.
      workerArgs: [...args, '--allow-unbounded-output', '--allow-unenforced-limits'],
      workerEnv: { HOME: home, HIVEMIND_HOME: home },
    },
    cleanup: () => rmSync(home, { recursive: true, force: true }),
  };
}

async function roundTrip(cluster: ProcessCluster, label: string): Promise<void> {
  const scratch = mkdtempSync(join(tmpdir(), 'hm-e2e-podman-'));
  try {
    const sub = await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', `echo "on ${label}: $HIVEMIND_TASK_ID"; echo to-stderr >&2; echo payload > /output/p.txt; id -u > /output/uid.txt`]);
    assert.equal(sub.code, 0, sub.stderr);
    const taskId = sub.stdout.trim();
    const wait = await cluster.cli(['wait', taskId], 120_000);
    assert.equal(wait.code, 0, `wait: ${wait.stdout} ${wait.stderr}\nworker: ${cluster.worker?.output}`);
    assert.match(wait.stdout, /succeeded/);
    const logs = await cluster.cli(['logs', taskId]);
    assert.equal(logs.code, 0, logs.stderr);
    assert.match(logs.stdout + logs.stderr, new RegExp(`on ${label}: ${taskId}`));
    assert.match(logs.stdout + logs.stderr, /to-stderr/);
    const out = join(scratch, 'result.tar.gz');
    const res = await cluster.cli(['result', taskId, '-o', out, '--extract', join(scratch, 'result')]);
    assert.equal(res.code, 0, res.stderr);
    assert.equal(readFileSync(join(scratch, 'result', 'p.txt'), 'utf8'), 'payload\n');
    // the task ran as the unprivileged user the runner sets, not as root
    assert.notEqual(readFileSync(join(scratch, 'result', 'uid.txt'), 'utf8').trim(), '0');
    const sha = execFileSync('sha256sum', [out]).toString().split(' ')[0];
    const info = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { outcome: { resultSha256: string } };
    assert.equal(info.outcome.resultSha256, sha, 'the downloaded archive is the one the worker reported');
  } finally {
    rmSync(scratch, { recursive: true, force: true });
  }
}

async function theNode(cluster: ProcessCluster): Promise<NodeJson> {
  const nodes = JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as NodeJson[];
  const online = nodes.filter((n) => n.online);
  assert.equal(online.length, 1);
  return online[0]!;
}

test('rootful Podman: a worker on --engine-socket says it runs on podman with every limit enforced, and runs a task with limits end to end', async (t) => {
  if (!requireEngine(t, 'podman')) return;
  const w = workerOn('podman');
  const cluster = await ProcessCluster.start(w.opts);
  try {
    const n = await theNode(cluster);
    assert.equal(n.facts?.engine, 'podman');
    assert.deepEqual(n.facts?.unenforcedLimits, []);
    assert.deepEqual(n.facts?.isolations, ['runc'], 'gVisor is Docker-only');
    assert.match(cluster.worker!.output, /container engine: rootful Podman [\d.]+ \(cgroup v1, cgroupfs\); CPU, memory and pids limits are enforced/);
    assert.match((await cluster.cli(['nodes'])).stdout, /ENGINE[\s\S]* podman +runc/);
    await roundTrip(cluster, 'podman');
    // A memory-limited task is placed here, and the limit holds: 64 MiB of a 32 MiB task is killed.
    // Podman 4.3 with runc on cgroup v1 leaves State.OOMKilled false, so the outcome may be a
    // plain SIGKILL (exit 137) rather than oom_killed; either way it did not run unbounded.
    const oom = await cluster.cli(['submit', '--image', IMAGE, '--memory', '32m', '--wait', '--', 'sh', '-c', 'head -c 67108864 /dev/zero | tail > /dev/null'], 120_000);
    assert.match(oom.stdout, /oom_killed|exit 137/, `${oom.stdout}${oom.stderr}\nworker: ${cluster.worker?.output}`);
    // The same task without the limit succeeds: the kill above was the limit.
    const free = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'head -c 67108864 /dev/zero | tail > /dev/null'], 120_000);
    assert.equal(free.code, 0, free.stdout + free.stderr);
  } finally {
    await cluster.close();
    w.cleanup();
  }
});

test('rootless Podman on cgroup v1 without --allow-unenforced-limits: the worker refuses to start, saying why and what to do', async (t) => {
  if (!requireEngine(t, 'podman-rootless')) return;
  const target = engineTarget('podman-rootless');
  const home = mkdtempSync(join(tmpdir(), 'hm-e2e-rootless-refuse-'));
  t.after(() => rmSync(home, { recursive: true, force: true }));
  chownSync(home, Number(execFileSync('id', ['-u', target.user!]).toString().trim()), Number(execFileSync('id', ['-g', target.user!]).toString().trim()));
  // No master is needed: the engine is asked before anything else, and the worker stops there.
  const r = spawnSync('runuser', ['-u', target.user!, '--', process.execPath, CLI, 'worker', 'start', '--engine-socket', `unix://${target.socketPath}`, '--no-services', '--allow-unbounded-output',
    '--master', '127.0.0.1:1', '--token', 'hm1.never-used', '--data-dir', join(home, 'worker')], { env: { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home }, encoding: 'utf8', timeout: 60_000 });
  assert.equal(r.status, 2, `exit ${r.status}: ${r.stderr}`);
  assert.match(r.stderr, /cannot enforce cpus \(--cpus\), memory \(--memory\) and pids \(--pids\) limits .*could take the whole machine: rootless Podman on cgroup v1 .*or start with --allow-unenforced-limits/);
});

test('rootless Podman, worker as an ordinary user: a task round trip with no root daemon, and a task with a memory limit waits instead of running unbounded', async (t) => {
  if (!requireEngine(t, 'podman-rootless')) return;
  const w = workerOn('podman-rootless');
  const cluster = await ProcessCluster.start(w.opts);
  try {
    // the worker process is not root
    const uid = execFileSync('ps', ['-o', 'uid=', '--ppid', String(cluster.worker!.pid)]).toString().trim();
    assert.equal(uid, execFileSync('id', ['-u', 'hmpodman']).toString().trim(), 'the worker runs as hmpodman');
    const n = await theNode(cluster);
    assert.equal(n.facts?.engine, 'podman-rootless');
    assert.deepEqual(n.facts?.unenforcedLimits, ['cpus', 'memory', 'pids']);
    assert.match(cluster.worker!.output, /container engine: rootless Podman [\d.]+ \(cgroup v1, cgroupfs\); it cannot enforce cpus \(--cpus\), memory \(--memory\) and pids \(--pids\) limits/);
    assert.match((await cluster.cli(['nodes'])).stdout, /podman-rootless \(no cpus\/memory\/pids limits\)/);
    await roundTrip(cluster, 'podman-rootless');

    const sub = await cluster.cli(['submit', '--image', IMAGE, '--memory', '64m', '--', 'true']);
    assert.equal(sub.code, 0, sub.stderr);
    const taskId = sub.stdout.trim();
    const queued = await waitFor('the queue reason', async () => {
      const info = JSON.parse((await cluster.cli(['get', taskId, '--json'])).stdout) as { state: string; queueReason: string; nodeId: string };
      return info.queueReason ? info : undefined;
    }, 30_000, 300);
    // Never given to the node that would drop its limit.
    recordHostile('e2e: a memory-limited task offered a rootless cgroup v1 Podman node', queued.state !== 'queued' || queued.nodeId !== '');
    assert.equal(queued.state, 'queued');
    assert.match(queued.queueReason, /^no accepting node can enforce its memory \(--memory\) limit \(.*rootless Podman on cgroup v1 enforces none/);
    assert.doesNotMatch(cluster.worker!.output, new RegExp(`"taskId":"${taskId}"`), 'the worker never heard of it');
    assert.equal((await cluster.cli(['cancel', taskId])).code, 0);
  } finally {
    await cluster.close();
    w.cleanup();
  }
});
