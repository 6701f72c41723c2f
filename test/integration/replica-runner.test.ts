// Service replicas against the real daemon: a busybox httpd replica reached through the netns
// connector (no network, no published port), restarted with backoff when it exits or fails its
// health checks, stopped within its grace period, and picked up again by a new worker process
// after the old one was killed with SIGKILL.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Duplex } from 'node:stream';
import { engineTargets, requireEngine, taskHostIds } from '../helpers/engines.js';
import { engineOf, outputFsDirOf, outputVolumesOf, removeScratch } from '../helpers/runner-task.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { ensureTestImage } from '../helpers/test-image.js';
import { DockerTaskRunner } from '../../src/runtime/docker-task-runner.js';
import { containerName } from '../../src/runtime/container-spec.js';
import { nodeLabelFilters } from '../../src/runtime/labels.js';
import { silentLogger } from '../../src/common/logger.js';
import { ReplicaUnreachableError } from '../../src/common/errors.js';
import { OutcomeKind, type ReplicaStatus, type ServiceRole, type TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ExecutionResult, TaskExecution } from '../../src/worker/contracts.js';

const NODE_ID = `it-replica-${process.pid}`;
let seq = 0;
const scratch: string[] = [];
after(() => Promise.all([...scratch.map((d) => rm(d, { recursive: true, force: true })), removeScratch()]));

// Each on every engine a node may run on (engines.ts): Docker, Podman rootful and rootless.
for (const target of engineTargets()) {
  const engine = engineOf(target);
  let image = '';

  before(async () => {
    try {
      image = await ensureTestImage(target.socketPath);
    } catch {
      // requireEngine() in each test reports the missing engine.
    }
  });
  after(async () => {
    // Whatever a failed test left of this file's replicas.
    for (const c of await engine.listContainers(nodeLabelFilters(NODE_ID)).catch(() => [])) await engine.removeContainer(c.id).catch(() => {});
    for (const v of await engine.listVolumes(nodeLabelFilters(NODE_ID)).catch(() => [])) await engine.removeVolume(v.name).catch(() => {});
  });

  const FAST = { health: { firstDelayMs: 200, intervalMs: 300, timeoutMs: 1000 }, restart: { initialMs: 300, maxMs: 2000 } };

  async function newRunner(spool?: string, replicas = FAST): Promise<{ runner: DockerTaskRunner; spool: string }> {
    spool ??= await mkdtemp(join(tmpdir(), 'hm-replica-'));
    scratch.push(spool);
    return { runner: new DockerTaskRunner(engine, { nodeId: NODE_ID, spoolDir: spool, outputVolumes: await outputVolumesOf(spool, target), replicas }, silentLogger()), spool };
  }

  /** An httpd replica serving /tmp/www (read-only root, /tmp is a tmpfs), after `prep`. */
  const httpd = (prep = 'echo ok > /tmp/www/health') => ['sh', '-c', `mkdir -p /tmp/www && ${prep} && echo serving && exec busybox httpd -f -p 8000 -h /tmp/www`];

  interface Replica {
    runner: DockerTaskRunner;
    taskId: string;
    ctl: AbortController;
    statuses: ReplicaStatus[];
    logs: string[];
    done: Promise<ExecutionResult>;
    last(): ReplicaStatus | undefined;
  }

  function startReplica(runner: DockerTaskRunner, command: string[], service: Partial<ServiceRole> = {}, opts: { taskId?: string; recovery?: 'reattach' } = {}): Replica {
    const taskId = opts.taskId ?? `rp${process.pid}-${++seq}`;
    const ctl = new AbortController();
    const statuses: ReplicaStatus[] = [];
    const logs: string[] = [];
    const spec: TaskSpec = {
      image,
      command,
      env: new Map(),
      limits: { cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 0 },
      network: 0, maxOutputBytes: 0,
      data: [],
      service: { service: 'web', replica: 0, port: 8000, healthPath: '/health', graceMs: 5000, ...service },
    };
    const exec: TaskExecution = {
      taskId,
      attempt: 1,
      spec,
      gpuIndexes: [],
      signal: ctl.signal,
      onPhase: () => {},
      onPullProgress: () => {},
      onLog: (_s, d) => logs.push(d.toString()),
      onReplica: (s) => statuses.push(s),
    };
    if (opts.recovery) exec.recovery = opts.recovery;
    return { runner, taskId, ctl, statuses, logs, done: runner.execute(exec), last: () => statuses.at(-1) };
  }

  async function until<T>(what: string, fn: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      const v = await fn();
      if (v) return v;
      if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  async function httpGet(sock: Duplex, path: string): Promise<string> {
    let out = '';
    sock.on('data', (d: Buffer) => (out += d.toString()));
    const ended = new Promise<void>((resolve, reject) => {
      sock.once('end', resolve);
      sock.once('error', reject);
    });
    sock.write(`GET ${path} HTTP/1.0\r\nHost: x\r\n\r\n`);
    await ended;
    sock.destroy();
    return out;
  }

  async function stopAndCheckGone(r: Replica, reason = 'cancelled'): Promise<ExecutionResult> {
    r.ctl.abort(reason);
    const result = await r.done;
    assert.deepEqual(await engine.listContainers(nodeLabelFilters(NODE_ID, r.taskId)), [], 'no container left');
    assert.deepEqual(await engine.listVolumes(nodeLabelFilters(NODE_ID, r.taskId)), [], 'no volume left');
    return result;
  }

  test(`${target.name}: connect() reaches the replica port inside a network-none container; healthy status; cancelled, nothing left`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { runner } = await newRunner();
    const r = startReplica(runner, httpd('echo ok > /tmp/www/health && cat /proc/net/dev > /tmp/www/netdev'));
    try {
      await until('healthy', () => r.last()?.healthy);
      assert.deepEqual({ ...r.last()!, lastExitAtMs: 0 }, { healthy: true, restarts: 0, lastExit: '', lastExitAtMs: 0, healthMessage: '', restartAtMs: 0, running: true });
      const answer = await httpGet(await runner.connect(r.taskId, 1), '/health');
      assert.match(answer, /^HTTP\/1\.[01] 200/);
      assert.match(answer, /\r\n\r\nok\n$/);

      // The container's own view: its only interface is lo.
      const netdev = await httpGet(await runner.connect(r.taskId, 1), '/netdev');
      const ifaces = netdev.split('\r\n\r\n')[1]!.split('\n').slice(2).filter(Boolean).map((l) => l.split(':')[0]!.trim());
      const info = await engine.inspectContainer((await engine.listContainers(nodeLabelFilters(NODE_ID, r.taskId)))[0]!.id);
      const bindings = info.hostConfig.PortBindings as Record<string, unknown> | null | undefined;
      recordHostile('replica: network beyond its loopback, or a published port', ifaces.join(',') !== 'lo' || info.hostConfig.NetworkMode !== 'none' || (bindings != null && Object.keys(bindings).length > 0));
      assert.deepEqual(ifaces, ['lo']);
      assert.equal(info.hostConfig.NetworkMode, 'none');
      assert.ok(bindings == null || Object.keys(bindings).length === 0, 'no published port');
      assert.equal(info.hostConfig.ReadonlyRootfs, true);

      await assert.rejects(runner.connect(r.taskId, 2), ReplicaUnreachableError, 'another attempt is not running here');
      await assert.rejects(runner.connect('no-such-task', 1), /not a service replica running on this node/);
      assert.ok((await runner.usage()).some((u) => u.taskId === r.taskId), 'the replica is in the usage report');
    } finally {
      const result = await stopAndCheckGone(r);
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_CANCELLED, result.outcome.message);
      assert.equal(result.result, undefined, 'no result');
    }
    await assert.rejects(runner.connect(r.taskId, 1), ReplicaUnreachableError, 'gone after the end');
  });

  test(`${target.name}: a replica that exits is started again with backoff: restarts, last_exit, restart_at_ms; logs of every run, once`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    // No health check within the test: a replica that listens on nothing fails its TCP checks, and
    // on a loaded machine six of them can end a run before its own exit does (rootless Podman
    // takes seconds to start and to report a stop).
    const { runner } = await newRunner(undefined, { ...FAST, health: { ...FAST.health, firstDelayMs: 600_000 } });
    const r = startReplica(runner, ['sh', '-c', 'echo run; sleep 0.3; exit 3'], { healthPath: '' });
    try {
      await until('3 restarts', () => (r.last()?.restarts ?? 0) >= 3);
      t.diagnostic(`statuses: ${JSON.stringify(r.statuses.map((s) => [s.restarts, s.running, s.lastExit, s.restartAtMs && s.restartAtMs - s.lastExitAtMs]))}; logs: ${JSON.stringify(r.logs.join(''))}`);
      const exited = r.statuses.find((s) => s.restarts === 1 && !s.running)!;
      assert.equal(exited.lastExit, 'exited with code 3');
      assert.ok(exited.restartAtMs >= exited.lastExitAtMs + 300 && exited.restartAtMs <= exited.lastExitAtMs + 400, 'first backoff: initialMs');
      const second = r.statuses.find((s) => s.restarts === 2 && !s.running)!;
      assert.ok(second.restartAtMs - second.lastExitAtMs >= 600, 'the backoff doubles');
      assert.ok(r.statuses.some((s) => s.restarts === 1 && s.running && s.restartAtMs === 0), 'running again after the backoff');
      const runs = r.logs.join('').match(/run/g)?.length ?? 0;
      const started = 1 + (r.last()!.restarts) - (r.last()!.running ? 0 : 1);
      assert.ok(runs >= started && runs <= started + 1, `each run's output once (${runs} "run" lines, ${started} runs)`);
    } finally {
      const result = await stopAndCheckGone(r, 'shutdown');
      assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_SHUTDOWN, result.outcome.message);
    }
  });

  test(`${target.name}: an unhealthy replica is reported with its failure and restarted after 6 failed checks`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { runner } = await newRunner();
    // Serves, but /health is missing: 404.
    const r = startReplica(runner, httpd('true'));
    try {
      await until('a failure message', () => r.last()?.healthMessage);
      assert.equal(r.last()!.healthMessage, 'GET /health: 404');
      assert.equal(r.last()!.healthy, false);
      await until('restarted as unhealthy', () => r.last()?.restarts === 1 && r.last());
      assert.match(r.last()!.lastExit, /^unhealthy: 6 health checks failed, the last: GET \/health: 404$/);
    } finally {
      await stopAndCheckGone(r);
    }
  });

  test(`${target.name}: abort stops with SIGTERM first; a replica ignoring it is killed after grace_ms`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const { runner } = await newRunner();
    const polite = startReplica(runner, ['sh', '-c', 'trap "echo bye; exit 0" TERM; echo up; while true; do sleep 0.1; done'], { healthPath: '', graceMs: 20_000 });
    const stubborn = startReplica(runner, ['sh', '-c', 'trap "" TERM; echo up; while true; do sleep 0.1; done'], { healthPath: '', graceMs: 1500 });
    await until('both running', () => polite.logs.join('').includes('up') && stubborn.logs.join('').includes('up') && polite.last()?.running && stubborn.last()?.running);
    let t0 = Date.now();
    await stopAndCheckGone(polite);
    assert.ok(Date.now() - t0 < 10_000, 'the polite one stopped on SIGTERM, well before its 20 s grace');
    assert.match(polite.logs.join(''), /bye/, 'it got SIGTERM');
    t0 = Date.now();
    const result = await stopAndCheckGone(stubborn);
    const took = Date.now() - t0;
    assert.ok(took >= 1400 && took < 10_000, `killed after its 1.5 s grace (took ${took} ms)`);
    assert.equal(result.outcome.kind, OutcomeKind.OUTCOME_KIND_CANCELLED);
  });

  test(`${target.name}: a new worker process reattaches to a running replica after kill -9, without restarting it`, async (t) => {
    if (!requireEngine(t, target.name)) return;
    const spool = await mkdtemp(join(tmpdir(), 'hm-replica-'));
    scratch.push(spool);
    const taskId = `rp${process.pid}-${++seq}`;
    // The first worker: a separate process, killed with SIGKILL once the replica is healthy.
    const dist = new URL('../../src/', import.meta.url).href;
    const script = join(spool, 'first-worker.mjs');
    await writeFile(
      script,
      `import { DockerEngine } from '${dist}runtime/docker-engine.js';
  import { LoopOutputVolumes } from '${dist}runtime/output-volume.js';
  import { DockerTaskRunner } from '${dist}runtime/docker-task-runner.js';
  import { silentLogger } from '${dist}common/logger.js';
  const runner = new DockerTaskRunner(DockerEngine.create({ socket: { kind: "unix", path: ${JSON.stringify(target.socketPath)} } }), { nodeId: ${JSON.stringify(NODE_ID)}, spoolDir: ${JSON.stringify(spool)}, outputVolumes: new LoopOutputVolumes(${JSON.stringify(outputFsDirOf(spool, target))}, undefined, undefined, ${JSON.stringify(taskHostIds(target))}, ${target.name !== 'docker'}), replicas: ${JSON.stringify(FAST)} }, silentLogger());
  runner.execute({ taskId: ${JSON.stringify(taskId)}, attempt: 1, gpuIndexes: [], signal: new AbortController().signal,
    spec: { image: ${JSON.stringify(image)}, command: ${JSON.stringify(httpd())}, env: new Map(), limits: { cpus: 0.5, memoryBytes: 67108864, pids: 64, gpus: 0, timeoutMs: 0 }, maxOutputBytes: 0, data: [], network: 0,
      service: { service: 'web', replica: 0, port: 8000, healthPath: '/health', graceMs: 5000 } },
    onPhase() {}, onPullProgress() {}, onLog() {}, onReplica(s) { if (s.healthy) process.stdout.write('HEALTHY\\n'); } });
  `,
    );
    const first = spawn(process.execPath, [script], { stdio: ['ignore', 'pipe', 'inherit'] });
    let said = '';
    first.stdout.on('data', (d: Buffer) => (said += d.toString()));
    await until('the first worker\'s replica healthy', () => said.includes('HEALTHY'), 30_000);
    const before = await engine.inspectContainer(containerName(taskId, 1));
    first.kill('SIGKILL');
    await new Promise((r) => first.once('exit', r));

    const { runner } = await newRunner(spool);
    assert.equal(await runner.probe(taskId, 1), 'started');
    const r = startReplica(runner, httpd(), {}, { taskId, recovery: 'reattach' });
    try {
      await until('healthy again', () => r.last()?.healthy);
      assert.match(await httpGet(await runner.connect(taskId, 1), '/health'), /^HTTP\/1\.[01] 200/);
      const now = await engine.inspectContainer(containerName(taskId, 1));
      assert.equal(now.id, before.id, 'the same container');
      assert.equal(now.state.startedAt, before.state.startedAt, 'not restarted');
      assert.equal(r.last()!.restarts, 0);
    } finally {
      await stopAndCheckGone(r);
    }
  });
}
