// The node's container engine without I/O: --engine-socket parsing and its config chain, which
// engine answers and which limits it enforces from what it says of itself, the master's placement
// of tasks setting limits, and what the master accepts of a node's engine facts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LimitKind, NodeFacts, TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { parseEngineSocket, engineSocketText, dockerodeOptions, defaultEngineSocket } from '../../src/runtime/engine-socket.js';
import { identifyEngine, describeEngine, type EngineReport } from '../../src/runtime/engine-identity.js';
import { decideLimits } from '../../src/runtime/engine-limits.js';
import { egressRefusal, gvisorRefusal } from '../../src/runtime/engine-detect.js';
import { compileWorkerConfig } from '../../src/config/worker-config.js';
import { ConfigError } from '../../src/common/errors.js';
import { demandOf, placeTasks, whyUnplaced, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';
import { classKey, TaskQueue } from '../../src/master/task-queue.js';
import { validateRegistration } from '../../src/master/node-input-validation.js';
import { describeLimits, limitsNotHeld, limitsSetBy } from '../../src/protocol/limit-rules.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { buildStatus } from '../../src/monitor/monitor-status.js';
import { FakeNode } from '../helpers/fake-monitored-node.js';

const { LIMIT_KIND_CPUS: CPUS, LIMIT_KIND_MEMORY: MEMORY, LIMIT_KIND_PIDS: PIDS } = LimitKind;
const ALL = [CPUS, MEMORY, PIDS];
const GiB = 1024 ** 3;

test('--engine-socket: a path, unix:// or tcp://; anything else is refused saying what is accepted', () => {
  assert.deepEqual(parseEngineSocket('/run/podman/podman.sock'), { kind: 'unix', path: '/run/podman/podman.sock' });
  assert.deepEqual(parseEngineSocket('unix:///run/hivemind-podman/podman.sock'), { kind: 'unix', path: '/run/hivemind-podman/podman.sock' });
  assert.deepEqual(parseEngineSocket('tcp://127.0.0.1:2375'), { kind: 'tcp', host: '127.0.0.1', port: 2375 });
  assert.deepEqual(parseEngineSocket('tcp://[::1]:2375/'), { kind: 'tcp', host: '::1', port: 2375 });
  assert.equal(engineSocketText(parseEngineSocket('tcp://[::1]:2375')), 'tcp://[::1]:2375');
  assert.deepEqual(dockerodeOptions(parseEngineSocket('tcp://h:1')), { host: 'h', port: 1, protocol: 'http' });
  assert.deepEqual(dockerodeOptions(parseEngineSocket('/s')), { socketPath: '/s' });
  const bad: [string, RegExp][] = [
    ['', /is empty/],
    ['run/podman.sock', /is not an absolute path/],
    ['unix://relative', /is not an absolute path/],
    ['tcp://host', /is not tcp:\/\/HOST:PORT with a port from 1 to 65535/],
    ['tcp://host:0', /port from 1 to 65535/],
    ['tcp://host:70000', /port from 1 to 65535/],
    ['https://host:2376', /uses the scheme https:\/\/, which the worker does not speak/],
    ['ssh://user@host', /which the worker does not speak/],
    ['/a\nb', /contains control characters/],
    [`/${'x'.repeat(200)}`, /longer than the 107 bytes a unix socket path may have/],
  ];
  for (const [v, re] of bad) {
    assert.throws(() => parseEngineSocket(v), (e: unknown) => e instanceof ConfigError && re.test(e.message) && /give an absolute socket path .*unix:\/\/\/PATH or tcp:\/\/HOST:PORT/.test(e.message), v);
  }
});

test('engineSocket config: flag > HIVEMIND_ENGINE_SOCKET > DOCKER_HOST > Docker\'s socket; a bad value names where it came from', () => {
  const base = { flags: { master: '127.0.0.1:1' } };
  assert.deepEqual(compileWorkerConfig({ ...base, env: {} }).engineSocket, { kind: 'unix', path: '/var/run/docker.sock' });
  assert.deepEqual(compileWorkerConfig({ ...base, env: { DOCKER_HOST: 'unix:///run/user/1001/podman/podman.sock' } }).engineSocket, { kind: 'unix', path: '/run/user/1001/podman/podman.sock' });
  assert.deepEqual(compileWorkerConfig({ ...base, env: { DOCKER_HOST: 'tcp://127.0.0.1:2375', HIVEMIND_ENGINE_SOCKET: '/run/hivemind-podman/podman.sock' } }).engineSocket, { kind: 'unix', path: '/run/hivemind-podman/podman.sock' });
  assert.deepEqual(compileWorkerConfig({ flags: { ...base.flags, engineSocket: 'unix:///x.sock' }, env: { HIVEMIND_ENGINE_SOCKET: '/y.sock' } }).engineSocket, { kind: 'unix', path: '/x.sock' });
  assert.throws(() => compileWorkerConfig({ flags: { ...base.flags, engineSocket: 'podman.sock' }, env: {} }), /engineSocket.*"podman.sock" is not an absolute path/s);
  assert.throws(() => compileWorkerConfig({ ...base, env: { HIVEMIND_ENGINE_SOCKET: 'tcp://x' } }), /HIVEMIND_ENGINE_SOCKET[\s\S]*not tcp:\/\/HOST:PORT/);
  assert.throws(() => compileWorkerConfig({ ...base, env: { DOCKER_HOST: 'ssh://me@host' } }), /DOCKER_HOST "ssh:\/\/me@host" uses the scheme ssh:\/\//);
  assert.deepEqual(defaultEngineSocket({ DOCKER_HOST: ' ' }, 'unix:///var/run/docker.sock'), { kind: 'unix', path: '/var/run/docker.sock' });
});

// What the engines on this project's cgroup v1 host answer (recorded from Docker 20.10 and Podman 4.3).
const docker: EngineReport = { version: '20.10.24+dfsg1', apiVersion: '1.41', components: ['Engine', 'containerd', 'runc', 'docker-init'], cgroupVersion: '1', cgroupDriver: 'cgroupfs', securityOptions: ['name=seccomp,profile=default'], memoryLimit: true, cpuCfsQuota: true, pidsLimit: true };
const podman: EngineReport = { ...docker, version: '4.3.1', components: ['Podman Engine', 'Conmon', 'OCI Runtime (runc)'], podman: { rootless: false, cgroupControllers: ['cpuset', 'cpu', 'cpuacct', 'blkio', 'memory', 'devices', 'freezer', 'pids'] } };
// Podman 4.3's compat /info says nothing of rootless (no name=rootless): /libpod/info does.
const rootlessV1: EngineReport = { ...podman, podman: { rootless: true, cgroupControllers: [] } };

test('engine identity: Docker, rootful Podman, rootless Podman, from /version, /info and /libpod/info', () => {
  const d = identifyEngine(docker);
  assert.deepEqual([d.engine, d.rootless, d.unenforced], ['docker', false, []]);
  assert.equal(describeEngine(d), 'rootful Docker 20.10.24+dfsg1 (cgroup v1, cgroupfs)');
  const p = identifyEngine(podman);
  assert.deepEqual([p.engine, p.product, p.unenforced], ['podman', 'Podman', []]);
  const r = identifyEngine(rootlessV1);
  assert.deepEqual([r.engine, r.rootless, r.unenforced], ['podman-rootless', true, ALL]);
  assert.match(r.unenforcedWhy!, /rootless on cgroup v1, where an ordinary user gets no cgroup/);
  assert.equal(describeEngine(r), 'rootless Podman 4.3.1 (cgroup v1, cgroupfs)');
  // The Components name alone tells Podman when /libpod/info is not read.
  assert.equal(identifyEngine({ ...podman, podman: undefined }).engine, 'podman');
  // Rootless Docker says so in SecurityOptions; it is Docker, with the same cgroup v1 limits.
  const rd = identifyEngine({ ...docker, securityOptions: ['name=seccomp,profile=default', 'name=rootless'] });
  assert.deepEqual([rd.engine, rd.rootless, rd.unenforced], ['docker', true, ALL]);
  // Neither side of it can offer gVisor or egress on Podman
  assert.equal(gvisorRefusal(d), undefined);
  assert.equal(egressRefusal(d), undefined);
  assert.match((gvisorRefusal(r) as { reason: string }).reason, /rootless Podman, and gVisor is offered on Docker only/);
  assert.match(egressRefusal(p)!, /rootful Podman, and the egress network is offered on Docker only/);
});

test('engine limits: rootless on cgroup v2 enforces what systemd delegates; rootful what the kernel supports', () => {
  const v2 = { rootless: true, cgroupVersion: '2', cgroupDriver: 'systemd' };
  assert.deepEqual(decideLimits({ ...v2, controllers: ['cpu', 'memory', 'pids'] }), { unenforced: [] });
  const noPids = decideLimits({ ...v2, controllers: ['cpu', 'memory'] });
  assert.deepEqual(noPids.unenforced, [PIDS]);
  assert.match(noPids.why!, /the pids cgroup controller is not delegated/);
  assert.deepEqual(decideLimits({ ...v2, controllers: ['memory'] }).unenforced, [CPUS, PIDS]);
  const cgroupfs = decideLimits({ ...v2, cgroupDriver: 'cgroupfs', controllers: ['cpu', 'memory', 'pids'] });
  assert.deepEqual(cgroupfs.unenforced, ALL);
  assert.match(cgroupfs.why!, /cgroupfs cgroup driver: only the systemd driver/);
  assert.deepEqual(decideLimits({ ...v2, cgroupVersion: 'v1' }).unenforced, ALL);
  assert.deepEqual(decideLimits({ ...v2, cgroupVersion: '' }).unenforced, ALL, 'a rootless engine not saying its cgroup version is taken as v1');
  // rootful: all, unless /info says the kernel lacks one
  assert.deepEqual(decideLimits({ rootless: false, cgroupVersion: '1', cgroupDriver: 'cgroupfs' }), { unenforced: [] });
  assert.deepEqual(decideLimits({ rootless: false, cgroupVersion: '1', cgroupDriver: 'cgroupfs', pidsLimit: false, memoryLimit: true }).unenforced, [PIDS]);
});

test('limit rules: a task sets a limit by giving it > 0; a node may take it unless that limit is unenforced there', () => {
  assert.deepEqual(limitsSetBy(undefined), []);
  assert.deepEqual(limitsSetBy({ cpus: 0, memoryBytes: 0, pids: 0 }), []);
  assert.deepEqual(limitsSetBy({ cpus: 0.5, memoryBytes: 64 * 1024 ** 2, pids: 10 }), ALL);
  assert.deepEqual(limitsNotHeld([MEMORY], []), []);
  assert.deepEqual(limitsNotHeld([MEMORY], undefined), []);
  assert.deepEqual(limitsNotHeld([], ALL), []);
  assert.deepEqual(limitsNotHeld([MEMORY, PIDS], [CPUS, PIDS]), [PIDS]);
  assert.equal(describeLimits([MEMORY]), 'memory (--memory)');
  assert.equal(describeLimits(ALL), 'cpus (--cpus), memory (--memory) and pids (--pids)');
});

const node = (nodeId: string, unenforcedLimits?: LimitKind[]): SchedulableNode => ({
  nodeId, label: nodeId, accepting: true, free: { cpus: 4, memoryBytes: 8 * GiB, gpus: 0, taskSlots: 4 }, ...(unenforcedLimits ? { unenforcedLimits } : {}),
});
const task = (id: string, limits?: LimitKind[]): QueuedTask => ({ id, excludedNodes: [], demand: { cpus: 0, memoryBytes: 0, gpus: 0, ...(limits ? { limits } : {}) } });

test('placement: a task setting a limit goes only to a node enforcing it, and waits with limits_unenforced when none does', () => {
  const spec = TaskSpec.fromPartial({ image: 'x', limits: { memoryBytes: 64 * 1024 ** 2, cpus: 0, pids: 0, gpus: 0, timeoutMs: 0 } });
  assert.deepEqual(demandOf(spec).limits, [MEMORY]);
  assert.equal(demandOf(TaskSpec.fromPartial({ image: 'x' })).limits, undefined);
  const p = placeTasks([task('m', [MEMORY]), task('free')], [node('rootless', ALL), node('docker')]);
  const at = new Map(p.assignments.map((a) => [a.taskId, a.nodeId]));
  assert.equal(at.get('m'), 'docker');
  assert.ok(at.has('free'));
  const only = placeTasks([task('m', [MEMORY]), task('free')], [node('rootless', ALL)]);
  assert.deepEqual(only.assignments.map((a) => a.taskId), ['free'], 'a rootless cgroup v1 node takes tasks that set no limit');
  const why = whyUnplaced(task('m', [MEMORY, PIDS]), [node('r1', ALL), node('r2', [PIDS])]);
  assert.equal(why?.code, 'limits_unenforced');
  assert.equal(why?.reason, 'no accepting node can enforce its memory (--memory) and pids (--pids) limits (r1, r2: rootless Podman on cgroup v1 enforces none; hivemind nodes shows each node\'s engine); drop the limit or add a node on Docker, rootful Podman or cgroup v2');
  assert.equal(whyUnplaced(task('p', [PIDS]), [node('r2', [PIDS]), node('ok', [CPUS])]), undefined);
});

test('demand classes: tasks setting different limits never share a class (the queue offers each the right nodes)', () => {
  assert.notEqual(classKey(task('a', [MEMORY])), classKey(task('a')));
  assert.notEqual(classKey(task('a', [MEMORY])), classKey(task('a', [PIDS])));
  const q = new TaskQueue();
  const e = q.add(task('m', [MEMORY]), 1, 1);
  assert.deepEqual(e.cls.task.demand.limits, [MEMORY], 'the class keeps the limits the placement reads');
});

test('registration: the master refuses a node\'s engine facts it cannot read, precisely', () => {
  const base = NodeFacts.fromPartial({ hostname: 'h', os: 'linux', arch: 'x64' });
  validateRegistration('n', { ...base, engine: 'podman-rootless', unenforcedLimits: ALL });
  validateRegistration('n', { ...base, engine: '', unenforcedLimits: [] });
  const hostile: [NodeFacts, RegExp][] = [
    [{ ...base, engine: 'kubernetes' }, /facts.engine: "kubernetes" is not an engine a node runs on \(docker, podman, podman-rootless\)/],
    [{ ...base, engine: 'x'.repeat(10_000) }, /facts.engine: "x{40}" is not an engine/],
    [{ ...base, unenforcedLimits: [MEMORY, MEMORY] }, /facts.unenforced_limits: memory is listed twice/],
    [{ ...base, unenforcedLimits: [9 as LimitKind] }, /facts.unenforced_limits: 9 is not a limit kind \(cpus = 1, memory = 2, pids = 3\)/],
    [{ ...base, unenforcedLimits: [LimitKind.LIMIT_KIND_UNSPECIFIED] }, /0 is not a limit kind/],
    [{ ...base, unenforcedLimits: new Array(100_000).fill(CPUS) }, /facts.unenforced_limits: 100000 entries, over the 3 limits there are/],
  ];
  let escaped = 0;
  for (const [facts] of hostile) {
    try {
      validateRegistration('n', facts);
      escaped++;
    } catch {
      // refused, as it should be
    }
  }
  recordHostile('master: a node registering unreadable engine facts (engine, unenforced_limits)', escaped, hostile.length);
  for (const [facts, re] of hostile) assert.throws(() => validateRegistration('n', facts), re);
});

test('monitor: the node panel\'s status names the engine and the limits it cannot enforce (docker for a node that says none)', () => {
  const store = { lastContribution: () => undefined, contributionTotal: () => ({ tasks: 0, cpuSeconds: 0, gpuSeconds: 0 }) } as unknown as Parameters<typeof buildStatus>[0]['store'];
  const at = (options: object) => buildStatus({ node: Object.assign(new FakeNode(), { options: { ...new FakeNode().options, ...options } }), store, now: 1, tunnel: undefined, docker: { ok: true, message: '' }, running: [] }).node;
  assert.deepEqual([at({}).engine, at({}).unenforcedLimits], ['docker', []]);
  const r = at({ engine: 'podman-rootless', unenforcedLimits: ALL });
  assert.deepEqual([r.engine, r.unenforcedLimits], ['podman-rootless', ['cpus', 'memory', 'pids']]);
});
