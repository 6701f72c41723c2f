// Fault scenarios with real processes and real Docker.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDockerImage, requireMount } from '../helpers/requirements.js';
import { restartDockerDaemon } from '../helpers/docker-daemon.js';
import { LocalRegistry } from '../helpers/local-registry.js';
import { ProcessCluster, registeredNodeId } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordScenario } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/busybox:1';

const containersOf = (taskId: string): string[] =>
  execFileSync('docker', ['ps', '-aq', '--filter', `label=io.hivemind.task-id=${taskId}`]).toString().split('\n').filter(Boolean);
const volumesOf = (taskId: string): string[] =>
  execFileSync('docker', ['volume', 'ls', '-q', '--filter', `label=io.hivemind.task-id=${taskId}`]).toString().split('\n').filter(Boolean);

interface TaskInfo {
  state: string;
  attempt: number;
  nodeId: string;
  outcome?: { message: string; resultSha256: string; resultSize: number };
  events: { state: string; message: string; attempt: number; nodeId: string; atMs: number }[];
}
const taskInfo = async (cluster: ProcessCluster, id: string): Promise<TaskInfo> => JSON.parse((await cluster.cli(['get', id, '--json'])).stdout) as TaskInfo;
// `--json` prints states as words (docs/cli-json.md).
const SUCCEEDED = 'succeeded';
const RUNNING = 'running';
const ENDED = new Set(['succeeded', 'failed', 'cancelled']);

/** How many times the master stored a result for the task (one line per verified upload). */
const storedCount = (cluster: ProcessCluster, taskId: string): number =>
  cluster.master.output.split('\n').filter((l) => l.includes('"result stored"') && l.includes(taskId)).length;

/** Waits for the task's terminal state, fetches its result, and counts it for the fault summary. */
async function settle(cluster: ProcessCluster, id: string, scenario: { name: string; faults: number; expect: (dir: string, i: TaskInfo) => boolean }): Promise<{ info: TaskInfo; dir: string }> {
  const w = await cluster.cli(['wait', id], 120_000);
  const i = await taskInfo(cluster, id);
  const dir = join(cluster.home, `result-${id}`);
  let delivered = false;
  if (w.code === 0 && i.state === SUCCEEDED) {
    const r = await cluster.cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir]);
    delivered = r.code === 0 && scenario.expect(dir, i);
  }
  const stored = storedCount(cluster, id);
  const ends = i.events.filter((e) => ENDED.has(e.state)).length;
  recordScenario({ name: scenario.name, faults: scenario.faults, submitted: 1, delivered: delivered ? 1 : 0, lost: delivered ? 0 : 1, duplicated: stored > 1 || ends > 1 ? 1 : 0 });
  assert.equal(w.code, 0, `${w.stdout}${w.stderr}\nworker:\n${cluster.worker?.output}`);
  assert.ok(delivered, `result of ${id} not delivered as expected: ${JSON.stringify(i)}`);
  assert.equal(stored, 1, 'the master stored the result once');
  assert.equal(i.attempt, 1, `not run as a second attempt: ${JSON.stringify(i.events)}`);
  return { info: i, dir };
}

/** Waits for RUNNING; on a timeout the error shows the task and the worker's log. */
async function waitRunning(cluster: ProcessCluster, id: string): Promise<void> {
  let last: TaskInfo | undefined;
  try {
    await waitFor('the task running', async () => ((last = await taskInfo(cluster, id)).state === RUNNING) || undefined, 60_000, 200);
  } catch (err) {
    throw new Error(`${(err as Error).message}\ntask: ${JSON.stringify(last)}\nworker:\n${cluster.worker?.output ?? ''}`);
  }
}

test('kill -9 of the worker mid-task: the restarted worker reattaches to the running container and delivers the result once', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ reportInterval: '3s' });
  try {
    // "while-down" is printed while no worker runs: the restarted one finds it in Docker's log.
    const taskId = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', 'echo before; sleep 2; echo while-down; sleep 5; echo after; echo survived > /output/r.txt'])).stdout.trim();
    await waitRunning(cluster, taskId);
    await new Promise((r) => setTimeout(r, 1000));
    await cluster.worker!.stop('SIGKILL');
    assert.equal(containersOf(taskId).length, 1, 'the container outlives the worker');

    await cluster.startWorker();
    const { dir } = await settle(cluster, taskId, { name: 'kill -9 mid-task, container still running', faults: 1, expect: (d) => readFileSync(join(d, 'r.txt'), 'utf8') === 'survived\n' });
    assert.match(cluster.worker!.output, /reattached to the container of an earlier run/);
    assert.ok(existsSync(dir));
    // The master's log of the task has every line once: nothing lost across the crash, nothing
    // forwarded twice (the store remembers how far the live log had reached).
    let masterLog = '';
    await waitFor('the log line after the restart', async () => /after/.test((masterLog = (await cluster.cli(['logs', taskId])).stdout)) || undefined, 10_000, 200);
    assert.equal(masterLog, 'before\nwhile-down\nafter\n', 'the whole log, each line once');
    await waitFor('the container and volumes removed', () => (containersOf(taskId).length === 0 && volumesOf(taskId).length === 0) || undefined, 30_000, 250);
    assert.deepEqual(readdirSync(join(cluster.home, 'worker', 'spool')), [], 'no spool debris');
    // And the node keeps serving.
    const ok = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'true']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  } finally {
    await cluster.close();
  }
});

test('kill -9 of the master while a task prints: the restarted master stores every line once (the node resends what the dead one never stored)', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ reportInterval: '3s' });
  try {
    // A line on each stream every 100 ms for 15 s: the master dies and comes back in the middle.
    const lines = 150;
    const script = `i=1; while [ $i -le ${lines} ]; do echo "out $i"; echo "err $i" >&2; i=$((i+1)); sleep 0.1; done`;
    const taskId = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', script])).stdout.trim();
    await waitRunning(cluster, taskId);
    await waitFor('a few lines stored', async () => /out 10\n/.test((await cluster.cli(['logs', taskId])).stdout) || undefined, 30_000, 100);
    await cluster.master.stop('SIGKILL');
    await new Promise((r) => setTimeout(r, 1000));
    await cluster.restartMaster();
    const w = await cluster.cli(['wait', taskId], 90_000);
    assert.equal(w.code, 0, `${w.stdout}${w.stderr}`);
    const stored = (await cluster.cli(['logs', taskId])).stdout;
    const all = Array.from({ length: lines }, (_, i) => i + 1);
    const of = (s: string) => stored.split('\n').filter((l) => l.startsWith(`${s} `)).map((l) => Number(l.slice(s.length + 1)));
    const whole = of('out').join() === all.join() && of('err').join() === all.join();
    recordScenario({ name: 'master kill -9 while a task prints: its stored log', faults: 1, submitted: 1, delivered: whole ? 1 : 0, lost: whole ? 0 : 1, duplicated: 0 });
    for (const s of ['out', 'err']) assert.deepEqual(of(s), all, `every ${s} line once, in order:\n${stored}`);
  } finally {
    await cluster.close();
  }
});

test('the container ends while the worker is down: the restarted worker collects it; the timeout counts from the container start', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // Reports every 10 s: the master gives the node 30 s before it requeues its tasks, longer than
  // this outage (past that, the tasks would run again elsewhere: tested in master-grpc).
  const cluster = await ProcessCluster.start({ reportInterval: '10s' });
  try {
    // Long enough that it is still running when the worker is killed, even on a loaded machine.
    const done = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', 'sleep 8; echo finished-alone > /output/r.txt'])).stdout.trim();
    // A second task whose 8 s limit runs out while the worker is away.
    const late = (await cluster.cli(['submit', '--image', IMAGE, '--timeout', '8s', '--', 'sleep', '600'])).stdout.trim();
    await waitRunning(cluster, done);
    await waitRunning(cluster, late);
    await cluster.worker!.stop('SIGKILL');
    const [container] = containersOf(done);
    assert.ok(container, 'the task container was still there when the worker was killed');
    const exited = () => execFileSync('docker', ['inspect', '-f', '{{.State.Status}}', container]).toString().trim() === 'exited';
    await waitFor('the container to exit on its own', () => exited() || undefined, 30_000, 250);
    await new Promise((r) => setTimeout(r, 8000));
    const restartedAt = Date.now();
    await cluster.startWorker();
    await settle(cluster, done, { name: 'container ended while the worker was down', faults: 1, expect: (d) => readFileSync(join(d, 'r.txt'), 'utf8') === 'finished-alone\n' });
    const w = await cluster.cli(['wait', late], 60_000);
    const l = await taskInfo(cluster, late);
    const timedOut = l.state !== SUCCEEDED && /wall-clock limit/.test(l.outcome?.message ?? '');
    recordScenario({ name: 'timeout ran out while the worker was down', faults: 1, submitted: 1, delivered: timedOut ? 1 : 0, lost: timedOut ? 0 : 1, duplicated: 0 });
    assert.notEqual(w.code, 0);
    assert.ok(timedOut, JSON.stringify(l));
    assert.ok(Date.now() - restartedAt < 30_000, 'the overdue task is killed at once, not after another 8 s of waiting');
  } finally {
    await cluster.close();
  }
});

test('kill -9 during the result upload: the restarted worker resumes from the offset the master holds', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ reportInterval: '3s' });
  try {
    const mib = 384;
    const taskId = (await cluster.cli(['submit', '--image', IMAGE, '--memory', '256m', '--max-output', `${mib + 64}m`, '--', 'sh', '-c', `dd if=/dev/urandom of=/output/big bs=1M count=${mib} 2>/dev/null; sha256sum /output/big | cut -d' ' -f1 > /output/big.sha256`])).stdout.trim();
    const partial = join(cluster.home, 'master', 'results', `${taskId}.partial`);
    const held = await waitFor('the upload under way', () => {
      try {
        const size = statSync(partial).size;
        return size > 0 ? size : undefined;
      } catch {
        return undefined;
      }
    }, 120_000, 10);
    await cluster.worker!.stop('SIGKILL');
    await cluster.startWorker();
    await settle(cluster, taskId, {
      name: 'kill -9 during the result upload',
      faults: 1,
      expect: (d) => createHash('sha256').update(readFileSync(join(d, 'big'))).digest('hex') === readFileSync(join(d, 'big.sha256'), 'utf8').trim(),
    });
    const resumed = /"offset":(\d+)/.exec(cluster.master.output.split('\n').find((l) => l.includes('result upload resumed') && l.includes(taskId)) ?? '');
    assert.ok(resumed, `the upload resumed instead of starting over:\n${cluster.master.output}`);
    assert.ok(Number(resumed[1]) >= held, `resumed at ${resumed![1]}, the master held ${held} bytes at the kill`);
  } finally {
    await cluster.close();
  }
});

const VANISH_NODE_TIMEOUT_S = 5;

test('a worker frozen (SIGSTOP) past the node timeout: its tasks run again on another worker and are stored once; when it resumes, its late attempts are refused and their containers removed; it serves again', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // Reports every 1 s; silent for 5 s = offline (the master's --node-timeout), a wide margin for
  // the live worker's reports on a loaded machine.
  const cluster = await ProcessCluster.start({ masterArgs: ['--node-timeout', `${VANISH_NODE_TIMEOUT_S}s`], workerArgs: ['--name', 'vanishing'] });
  const a = cluster.worker!;
  try {
    const aId = await waitFor('worker A\'s node id', () => registeredNodeId(a));
    // Attempt 1 (on A) of `long` is still running when A resumes: it must be stopped, not finished.
    // Attempt 1 of `ended` ends while A is frozen: A holds a result nobody may take.
    // Their second attempts are short. Each result names the attempt that made it.
    const script = (first: number) => `if [ "$HIVEMIND_ATTEMPT" = 1 ]; then sleep ${first}; else sleep 2; fi; echo "attempt $HIVEMIND_ATTEMPT" > /output/r.txt`;
    const long = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', script(600)])).stdout.trim();
    const ended = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', script(15)])).stdout.trim();
    await waitRunning(cluster, long);
    await waitRunning(cluster, ended);
    const b = await cluster.addWorker({ workerArgs: ['--name', 'spare'] });
    const firstContainers = new Map([long, ended].map((id) => [id, containersOf(id)]));
    assert.ok([...firstContainers.values()].every((c) => c.length === 1), 'attempt 1 of each task has its container on A');

    a.child.kill('SIGSTOP');
    const frozenAt = Date.now();
    // The master gives A's attempts up after the node timeout and runs them again on B.
    for (const id of [long, ended]) {
      const w = await cluster.cli(['wait', id], 120_000);
      assert.equal(w.code, 0, `${w.stdout}${w.stderr}\nB:\n${b.daemon.output}\nmaster:\n${cluster.master.output}`);
    }
    const lostAfterMs = Date.now() - frozenAt;
    // `ended`'s first container exits on its own; frozen A cannot collect it.
    const [endedFirst] = firstContainers.get(ended)!;
    await waitFor('attempt 1 of `ended` to exit on A', () => execFileSync('docker', ['inspect', '-f', '{{.State.Status}}', endedFirst!]).toString().trim() === 'exited' || undefined, 60_000, 250);
    assert.equal(execFileSync('docker', ['inspect', '-f', '{{.State.Status}}', firstContainers.get(long)![0]!]).toString().trim(), 'running', 'attempt 1 of `long` still runs while A is frozen');

    a.child.kill('SIGCONT');
    const resumedAt = Date.now();
    // A learns its attempts were given up: both containers go, `long`'s long before its 600 s.
    const gone = await waitFor('the containers of A\'s attempts removed', () => ([long, ended].every((id) => containersOf(id).length === 0 && volumesOf(id).length === 0) || undefined), 60_000, 250).catch(() => false);
    const goneAfterMs = Date.now() - resumedAt;
    const outcomes: { id: string; delivered: boolean; stored: number; ends: number; info: TaskInfo; lateEvents: TaskInfo['events'] }[] = [];
    for (const id of [long, ended]) {
      const info = await taskInfo(cluster, id);
      const dir = join(cluster.home, `result-${id}`);
      const r = await cluster.cli(['result', id, '-o', `${dir}.tar.gz`, '--extract', dir]);
      const delivered = r.code === 0 && info.state === SUCCEEDED && existsSync(join(dir, 'r.txt')) && readFileSync(join(dir, 'r.txt'), 'utf8') === 'attempt 2\n';
      // The master's history of attempt 1 ends where it gave it up; nothing A sent later counts.
      const lostAt = info.events.find((e) => e.attempt === 1 && /went offline/.test(e.message))?.atMs ?? Infinity;
      const lateEvents = info.events.filter((e) => e.attempt === 1 && e.atMs > lostAt);
      outcomes.push({ id, delivered, stored: storedCount(cluster, id), ends: info.events.filter((e) => ENDED.has(e.state)).length, info, lateEvents });
    }
    for (const [i, o] of outcomes.entries()) {
      recordScenario({ name: 'worker frozen past the node timeout, then resumed', faults: i === 0 ? 1 : 0, submitted: 1, delivered: o.delivered ? 1 : 0, lost: o.delivered ? 0 : 1, duplicated: o.stored > 1 || o.ends > 1 ? 1 : 0 });
    }
    t.diagnostic(`both tasks done on B ${lostAfterMs} ms after the freeze; A's containers gone ${goneAfterMs} ms after it resumed`);
    const aLog = () => `A:\n${a.output}\nmaster:\n${cluster.master.output}`;
    for (const o of outcomes) {
      assert.ok(o.delivered, `result of ${o.id} is attempt 2's: ${JSON.stringify(o.info)}`);
      assert.equal(o.info.attempt, 2);
      assert.equal(o.info.nodeId, b.nodeId, 'attempt 2 ran on B');
      assert.ok(o.info.events.some((e) => e.attempt === 1 && e.nodeId === aId && new RegExp(`node vanishing \\(${aId.slice(0, 8)}\\) went offline`).test(e.message)), JSON.stringify(o.info.events));
      assert.equal(o.stored, 1, 'the master stored one result');
      assert.equal(o.ends, 1, 'one terminal state at the master');
      assert.deepEqual(o.lateEvents, [], 'A\'s late updates were refused');
    }
    assert.ok(lostAfterMs >= VANISH_NODE_TIMEOUT_S * 1000, `not requeued before the node timeout (${lostAfterMs} ms)`);
    assert.ok(gone, `the containers of A's attempts were removed after it resumed\n${aLog()}`);
    assert.ok(goneAfterMs < 45_000, `removed soon after A resumed: ${goneAfterMs} ms`);
    // A was told: the cancel the master queued on its command stream when it gave the attempts up.
    const cancelled = a.output.split('\n').filter((l) => l.includes('"cancel requested by the master"') && l.includes('was given up'));
    assert.ok(cancelled.some((l) => l.includes(long)), `A got the cancel of \`long\`'s attempt 1\n${aLog()}`);

    // A serves again: with B gone, a new task can only run on A.
    await b.daemon.stop('SIGTERM');
    const next = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--json', '--', 'sh', '-c', 'echo back > /output/r.txt'], 120_000);
    assert.equal(next.code, 0, `${next.stdout}${next.stderr}\n${aLog()}`);
    const nextId = (JSON.parse(next.stdout) as { taskId: string }).taskId;
    const ni = await taskInfo(cluster, nextId);
    assert.equal(ni.nodeId, aId, 'the new task ran on A');
    assert.equal(ni.attempt, 1);
  } finally {
    a.child.kill('SIGCONT');
    await cluster.close();
  }
});

/** When the worker logged each "lost the master; reconnecting" (its reconnect attempts), in ms. */
const reconnectTimes = (output: string): number[] =>
  output.split('\n').filter((l) => l.includes('"lost the master; reconnecting"')).map((l) => (JSON.parse(l) as { time: number }).time);

const MASTER_DOWN_MS = 180_000;

test('the master down for three minutes: tasks go on, their updates and results wait and arrive once; reconnects back off with jitter', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start();
  try {
    // One task ends soon after the master goes, one near the end of its absence.
    const work = ['sleep 4', 'sleep 150'];
    const ids: string[] = [];
    for (const [i, w] of work.entries()) {
      ids.push((await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', `${w}; echo result-${i} > /output/r.txt`])).stdout.trim());
    }
    await waitFor('both tasks running', async () => {
      const states = await Promise.all(ids.map(async (id) => (await taskInfo(cluster, id)).state));
      return states.every((s) => s === RUNNING) || undefined;
    }, 60_000, 200);
    await cluster.master.stop('SIGTERM');
    const downAt = Date.now();
    await new Promise((r) => setTimeout(r, MASTER_DOWN_MS));
    assert.equal(cluster.worker!.child.exitCode, null, 'the worker keeps running');
    await cluster.restartMaster();
    const upAt = Date.now();
    for (const [i, id] of ids.entries()) {
      const w = await cluster.cli(['wait', id], 90_000);
      const got = w.code === 0 && (await cluster.cli(['result', id, '-o', join(cluster.home, `c${i}.tar.gz`), '--extract', join(cluster.home, `c${i}`)])).code === 0 && readFileSync(join(cluster.home, `c${i}`, 'r.txt'), 'utf8') === `result-${i}\n`;
      const info = await taskInfo(cluster, id);
      const ends = info.events.filter((e) => ENDED.has(e.state)).length;
      recordScenario({ name: 'master down 3 min while the tasks finish', faults: i === 0 ? 1 : 0, submitted: 1, delivered: got ? 1 : 0, lost: got ? 0 : 1, duplicated: storedCount(cluster, id) > 1 || ends > 1 ? 1 : 0 });
      assert.equal(w.code, 0, `${w.stdout}${w.stderr}\nworker:\n${cluster.worker!.output}`);
      assert.ok(got, `result ${i} delivered`);
      assert.equal(info.attempt, 1, `not run a second time: ${JSON.stringify(info.events)}\nmaster:\n${cluster.master.output}`);
      assert.equal(info.events.filter((e) => e.state === SUCCEEDED).length, 1, 'one terminal update, not a duplicate');
    }
    // Reconnects while the master was away: few, spaced ever wider up to the 30 s cap, jittered.
    const tries = reconnectTimes(cluster.worker!.output).filter((at) => at >= downAt && at <= upAt);
    const gaps = tries.slice(1).map((at, k) => at - tries[k]!);
    assert.ok(tries.length >= 5 && tries.length <= 25, `${tries.length} reconnect attempts in ${MASTER_DOWN_MS / 1000} s (gaps ${gaps.join(', ')} ms)`);
    assert.ok(gaps.every((g) => g <= 31_000 + 5_000), `no gap beyond the 30 s cap: ${gaps.join(', ')}`);
    assert.ok(gaps.slice(-3).every((g) => g >= 10_000), `late gaps are long: ${gaps.join(', ')}`);
    assert.ok(new Set(gaps.slice(-4).map((g) => Math.round(g / 500))).size > 1, `jittered, not a fixed period: ${gaps.join(', ')}`);
  } finally {
    await cluster.close();
  }
});

test('SIGTERM drains until --drain-timeout, then cancels what is left as SHUTDOWN; the node reports all along; a second SIGTERM cancels at once', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ workerArgs: ['--drain-timeout', '12s'] });
  try {
    // 5 s of work: still running when the test sees it RUNNING and sends SIGTERM, even on a loaded
    // machine, and done well within the 12 s drain.
    const quick = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sh', '-c', 'sleep 5; echo drained > /output/r.txt'])).stdout.trim();
    const slow = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '600'])).stdout.trim();
    await waitRunning(cluster, quick);
    await waitRunning(cluster, slow);
    interface NodeView { online: boolean; lastSeenMs: number; lastReport?: { seq: number; accepting: boolean } }
    const node = async () => (JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as NodeView[])[0]!;
    const before = await node();
    const termAt = Date.now();
    cluster.worker!.child.kill('SIGTERM');
    // During the drain the node stays online (reports go on) but takes nothing new. Looked at
    // after 4.5 s, past the 3 s (3 missed 1 s reports) after which a silent node is offline.
    await new Promise((r) => setTimeout(r, 4500));
    const draining = await node();
    const drainedForMs = Date.now() - termAt;
    assert.ok(drainedForMs < 11_000, `still within the 12 s drain when looked at (${drainedForMs} ms)`);
    assert.ok(draining.online, `online while draining: ${JSON.stringify(draining)}`);
    assert.ok(draining.lastReport && before.lastReport && draining.lastReport.seq >= before.lastReport.seq + 2, `reports went on during the drain: seq ${before.lastReport?.seq} at SIGTERM, ${draining.lastReport?.seq} ${drainedForMs} ms later`);
    assert.ok(draining.lastSeenMs > termAt, 'seen after the SIGTERM');
    assert.equal(draining.lastReport.accepting, false, 'the draining node reports that it takes nothing new');
    const code = await cluster.worker!.exited;
    const tookMs = Date.now() - termAt;
    await settle(cluster, quick, { name: 'SIGTERM: a running task finishes within the drain', faults: 1, expect: (d) => readFileSync(join(d, 'r.txt'), 'utf8') === 'drained\n' });
    const s = await taskInfo(cluster, slow);
    const cancelled = s.state === 'cancelled' && /shutdown/i.test(s.outcome?.message ?? '');
    recordScenario({ name: 'SIGTERM: a task past the drain timeout is cancelled as SHUTDOWN', faults: 0, submitted: 1, delivered: cancelled ? 1 : 0, lost: cancelled ? 0 : 1, duplicated: 0 });
    assert.equal(code, 0, cluster.worker!.output);
    assert.ok(cancelled, JSON.stringify(s));
    assert.ok(tookMs >= 11_500 && tookMs < 30_000, `exited after the 12 s drain: ${tookMs} ms`);
    assert.equal(containersOf(slow).length, 0, 'the cancelled container is removed');

    // Second signal: cancel at once instead of waiting out a long drain.
    await cluster.startWorker({ workerArgs: ['--drain-timeout', '10m'] });
    const long = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '600'])).stdout.trim();
    await waitRunning(cluster, long);
    cluster.worker!.child.kill('SIGTERM');
    await new Promise((r) => setTimeout(r, 1000));
    const secondAt = Date.now();
    cluster.worker!.child.kill('SIGTERM');
    assert.equal(await cluster.worker!.exited, 0);
    assert.ok(Date.now() - secondAt < 15_000, 'the second SIGTERM does not wait for the 10 min drain');
    const l = await taskInfo(cluster, long);
    assert.equal(l.state, 'cancelled', JSON.stringify(l));
    assert.match(cluster.worker!.output, /second signal: cancelling running tasks now/);
  } finally {
    await cluster.close();
  }
});

test('the worker\'s disk fills while a result is written: the task fails saying so, nothing is left behind, the node keeps serving', async (t) => {
  if (!requireDockerImage(t, IMAGE) || !requireMount(t)) return;
  const disk = mkdtempSync(join(tmpdir(), 'hm-small-disk-'));
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=24m', 'tmpfs', disk]);
  let cluster: ProcessCluster | undefined;
  try {
    cluster = await ProcessCluster.start({ workerDataDir: join(disk, 'worker') });
    // 64 MiB of random data cannot compress into the 24 MiB disk.
    const big = (await cluster.cli(['submit', '--image', IMAGE, '--memory', '256m', '--', 'sh', '-c', 'dd if=/dev/urandom of=/output/big bs=1M count=64 2>/dev/null'])).stdout.trim();
    const w = await cluster.cli(['wait', big], 120_000);
    const i = await taskInfo(cluster, big);
    const clear = i.state === 'failed' && /the worker's disk is full/.test(i.outcome?.message ?? '');
    const spool = readdirSync(join(disk, 'worker', 'spool'));
    recordScenario({ name: 'worker disk full while the result is written', faults: 1, submitted: 1, delivered: clear ? 1 : 0, lost: clear ? 0 : 1, duplicated: 0 });
    assert.notEqual(w.code, 0);
    assert.ok(clear, JSON.stringify(i));
    assert.deepEqual(spool, [], 'the partial archive is removed');
    assert.equal(containersOf(big).length, 0);
    // The node keeps serving once the space is back.
    const ok = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo fits > /output/small.txt']);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr + cluster.worker!.output);
  } finally {
    await cluster?.close();
    execFileSync('umount', ['-l', disk]);
    rmSync(disk, { recursive: true, force: true });
  }
});

test('the Docker daemon restarted under a running task: the task ends with a clear message and the node keeps serving', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  const cluster = await ProcessCluster.start({ reportInterval: '10s' });
  try {
    const id = (await cluster.cli(['submit', '--image', IMAGE, '--', 'sleep', '600'])).stdout.trim();
    await waitRunning(cluster, id);
    await restartDockerDaemon(3000);
    const w = await cluster.cli(['wait', id], 120_000);
    const i = await taskInfo(cluster, id);
    const clear = i.state === 'failed' && /Docker daemon/.test(i.outcome?.message ?? '');
    recordScenario({ name: 'Docker daemon restarted under a running task', faults: 1, submitted: 1, delivered: clear ? 1 : 0, lost: clear ? 0 : 1, duplicated: 0 });
    assert.notEqual(w.code, 0);
    assert.ok(clear, `${JSON.stringify(i)}\nworker:\n${cluster.worker!.output}`);
    const ok = await cluster.cli(['submit', '--image', IMAGE, '--wait', '--', 'sh', '-c', 'echo after the restart > /output/r.txt'], 120_000);
    assert.equal(ok.code, 0, ok.stdout + ok.stderr + cluster.worker!.output);
    // The container and volumes the daemon's restart kept the runner from removing go at the
    // first report (10 s here) that finds Docker answering, not at the 10-minute reclaim.
    await waitFor('the failed task\'s container and volumes removed', () => (containersOf(id).length === 0 && volumesOf(id).length === 0) || undefined, 30_000, 250);
  } finally {
    await cluster.close();
  }
});

test('kill -9 while the worker pulls the task image: the restarted worker pulls again and runs the task once', async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // A report every 3 s: the master calls the node offline after 9 s, longer than a restart takes on a slow CI machine.
  // The image is served at 64 KiB/s from a registry on loopback: the pull takes several seconds.
  const registry = await LocalRegistry.start(IMAGE, 'hm-test/pulled', '1', { bytesPerSecond: 64 * 1024 });
  const cluster = await ProcessCluster.start({ reportInterval: '3s' });
  try {
    const id = (await cluster.cli(['submit', '--image', registry.image, '--', 'sh', '-c', 'echo pulled and ran > /output/r.txt'])).stdout.trim();
    await waitFor('the pull under way', () => registry.layerBytesServed > 64 * 1024 || undefined, 60_000, 50);
    assert.equal((await taskInfo(cluster, id)).state, 'pulling', 'the master sees the task PULLING');
    await cluster.worker!.stop('SIGKILL');
    await cluster.startWorker();
    await settle(cluster, id, { name: 'kill -9 during the image pull', faults: 1, expect: (d) => readFileSync(join(d, 'r.txt'), 'utf8') === 'pulled and ran\n' });
    assert.match(cluster.worker!.output, /running again a task an earlier run of this worker took but had not started/);
  } finally {
    await cluster.close();
    await registry.close();
  }
});
