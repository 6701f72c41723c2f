// Isolation levels without I/O: which node may take which task, the queue reason, demand classes,
// the node's offer from its --isolation and the gVisor probe, the spec rules and the container
// config a gVisor task gets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Isolation, NodeFacts, TaskNetwork, TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { offersIsolation, offeredIsolationsViolation, isolationName } from '../../src/protocol/isolation-rules.js';
import { demandOf, placeTasks, whyUnplaced, type QueuedTask, type SchedulableNode } from '../../src/master/scheduler.js';
import { classKey } from '../../src/master/task-queue.js';
import { chooseIsolations, GvisorUnavailableError } from '../../src/runtime/isolation-choice.js';
import { checkTaskSpec } from '../../src/protocol/task-spec-rules.js';
import { buildContainerConfig, RUNNER_DEFAULTS } from '../../src/runtime/container-spec.js';
import { compileWorkerConfig } from '../../src/config/worker-config.js';
import { validateRegistration } from '../../src/master/node-input-validation.js';
import { buildSpec } from '../../src/cli/task-spec-flags.js';
import { formatTask, offeredIsolations } from '../../src/cli/task-format.js';
import { TaskInfo } from '../../src/protocol/gen/hivemind/v1/admin.js';
import { InvalidTaskError } from '../../src/common/errors.js';
import type { TaskExecution } from '../../src/worker/contracts.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const { ISOLATION_UNSPECIFIED: ANY, ISOLATION_RUNC: RUNC, ISOLATION_GVISOR: GVISOR } = Isolation;
const GiB = 1024 ** 3;
const node = (nodeId: string, isolations?: Isolation[]): SchedulableNode => ({
  nodeId, label: nodeId, accepting: true, free: { cpus: 4, memoryBytes: 8 * GiB, gpus: 0, taskSlots: 4 }, ...(isolations ? { isolations } : {}),
});
const task = (id: string, isolation?: Isolation): QueuedTask => ({ id, excludedNodes: [], demand: { cpus: 0, memoryBytes: 0, gpus: 0, ...(isolation ? { isolation } : {}) } });

test('offersIsolation: a task naming none goes anywhere; runc needs runc (an older node saying none runs runc); gvisor needs gvisor', () => {
  for (const offered of [undefined, [], [RUNC], [GVISOR], [RUNC, GVISOR]]) assert.equal(offersIsolation(ANY, offered), true);
  assert.equal(offersIsolation(RUNC, []), true);
  assert.equal(offersIsolation(RUNC, undefined), true);
  assert.equal(offersIsolation(RUNC, [GVISOR]), false, 'a gVisor-only node refuses runc tasks');
  assert.equal(offersIsolation(GVISOR, []), false);
  assert.equal(offersIsolation(GVISOR, [RUNC]), false);
  assert.equal(offersIsolation(GVISOR, [RUNC, GVISOR]), true);
});

test('placement: a gVisor task goes only to a node offering gVisor, and waits with a reason when none does', () => {
  const p = placeTasks([task('g', GVISOR), task('r', RUNC), task('a')], [node('n1'), node('n2', [RUNC, GVISOR])]);
  const at = new Map(p.assignments.map((a) => [a.taskId, a.nodeId]));
  assert.equal(at.get('g'), 'n2');
  assert.ok(at.has('r') && at.has('a'));
  const why = whyUnplaced(task('g', GVISOR), [node('n1'), node('n3', [RUNC])]);
  assert.equal(why?.code, 'isolation');
  assert.match(why!.reason, /no accepting node offers gvisor isolation .*hivemind doctor/);
  const only = placeTasks([task('r', RUNC), task('a')], [node('g1', [GVISOR])]);
  assert.deepEqual(only.assignments.map((a) => a.taskId), ['a'], 'a gVisor-only node takes tasks naming no isolation, not runc ones');
  assert.equal(whyUnplaced(task('r', RUNC), [node('g1', [GVISOR])])?.code, 'isolation');
});

test('demand classes: a gVisor task never shares a class with a task that does not need it', () => {
  const d = demandOf(TaskSpec.fromPartial({ image: 'x', isolation: GVISOR }));
  assert.equal(d.isolation, GVISOR);
  assert.equal(demandOf(TaskSpec.fromPartial({ image: 'x' })).isolation, undefined);
  assert.notEqual(classKey(task('a', GVISOR)), classKey(task('a')));
  assert.notEqual(classKey(task('a', GVISOR)), classKey(task('a', RUNC)));
});

test('the node\'s offer: runc mode adds gVisor only when it works; gvisor mode forces it and refuses to start without it', () => {
  const works = { usable: true as const, detail: 'ok' };
  const broken = { usable: false as const, reason: 'Docker has no "runsc" runtime registered (it lists runc)' };
  assert.deepEqual(chooseIsolations('runc', works), { offered: [RUNC, GVISOR], runDefault: RUNC });
  assert.deepEqual(chooseIsolations('runc', broken), { offered: [RUNC], runDefault: RUNC });
  assert.deepEqual(chooseIsolations('gvisor', works), { offered: [GVISOR], runDefault: GVISOR });
  assert.throws(() => chooseIsolations('gvisor', broken), (err: unknown) => err instanceof GvisorUnavailableError && err.code === 'GVISOR_UNAVAILABLE' && /--isolation gvisor: .*no "runsc" runtime registered.*apt-get install runsc.*--network=none.*hivemind doctor/.test(err.message));
});

test('config: --isolation from file < env < flag, default runc, anything else refused', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).isolation, 'runc');
  assert.equal(compileWorkerConfig({ file: { worker: { isolation: 'gvisor' } }, filePath: '/c.json', env: {}, flags: {} }).isolation, 'gvisor');
  assert.equal(compileWorkerConfig({ file: { worker: { isolation: 'gvisor' } }, filePath: '/c.json', env: { HIVEMIND_ISOLATION: 'runc' }, flags: {} }).isolation, 'runc');
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_ISOLATION: 'runc' }, flags: { isolation: 'gvisor' } }).isolation, 'gvisor');
  assert.throws(() => compileWorkerConfig({ env: {}, flags: { isolation: 'kata' } }), /isolation/);
  assert.deepEqual(compileWorkerConfig({ env: {}, flags: {} }).isolations, [RUNC], 'runc only until the worker probed gVisor');
});

test('CLI: --isolation on submit/run sets the spec; nodes list what they offer', () => {
  assert.equal(buildSpec('x', [], { isolation: 'gvisor' }).isolation, GVISOR);
  assert.equal(buildSpec('x', [], { isolation: 'runc' }).isolation, RUNC);
  assert.equal(buildSpec('x', [], {}).isolation, undefined);
  assert.throws(() => buildSpec('x', [], { isolation: 'docker' }), /--isolation: "docker" is not one of runc, gvisor/);
  assert.equal(offeredIsolations([RUNC, GVISOR]), 'runc,gvisor');
  assert.equal(offeredIsolations([]), 'runc');
  assert.equal(isolationName(ANY), 'runc');
  assert.match(formatTask(TaskInfo.fromPartial({ taskId: 't', spec: { image: 'x', isolation: GVISOR } })), /^isolation gvisor$/m);
  assert.doesNotMatch(formatTask(TaskInfo.fromPartial({ taskId: 't', spec: { image: 'x' } })), /isolation/);
});

function exec(spec: Partial<TaskSpec>): TaskExecution {
  return {
    taskId: 't-1', attempt: 1, gpuIndexes: [], signal: new AbortController().signal, onPhase: () => {}, onPullProgress: () => {}, onLog: () => {},
    spec: TaskSpec.fromPartial({ image: 'hivemind/busybox:1', command: ['true'], ...spec }),
  };
}

test('container config: runsc for a gVisor task or on a gVisor-only node, the same lock-down either way', () => {
  const runc = buildContainerConfig(exec({}), 'n');
  const gv = buildContainerConfig(exec({ isolation: GVISOR }), 'n');
  assert.equal(runc.HostConfig.Runtime, undefined);
  assert.equal(gv.HostConfig.Runtime, 'runsc');
  assert.deepEqual({ ...gv.HostConfig, Runtime: undefined, PidsLimit: 0 }, { ...runc.HostConfig, Runtime: undefined, PidsLimit: 0 }, 'every other option is the same');
  assert.equal(gv.HostConfig.PidsLimit, 64 + 8 * runc.HostConfig.PidsLimit, 'the sandbox\'s host threads: its own plus about 8 per process of the task');
  assert.equal(buildContainerConfig(exec({}), 'n', { ...RUNNER_DEFAULTS, isolation: GVISOR }).HostConfig.Runtime, 'runsc');
});

test('spec rules: gVisor tasks take no GPU, no egress network and are no service replica; unknown isolations are refused', () => {
  assert.doesNotThrow(() => checkTaskSpec(TaskSpec.fromPartial({ image: 'x', isolation: GVISOR })));
  assert.throws(() => checkTaskSpec(TaskSpec.fromPartial({ image: 'x', isolation: GVISOR, limits: { gpus: 1 } })), /gVisor tasks get no GPU/);
  assert.throws(() => checkTaskSpec(TaskSpec.fromPartial({ image: 'x', isolation: GVISOR, service: { service: 's', replica: 0, port: 80 } })), /replicas run under runc/);
  assert.throws(() => checkTaskSpec(TaskSpec.fromPartial({ image: 'x', isolation: GVISOR, network: TaskNetwork.TASK_NETWORK_EGRESS })), /gVisor tasks get no network/);
  let escaped = 0;
  try {
    checkTaskSpec(TaskSpec.fromPartial({ image: 'x', isolation: 7 as Isolation }));
    escaped = 1;
  } catch (err) {
    if (!(err instanceof InvalidTaskError && /spec.isolation 7 is not a known isolation/.test(err.message))) escaped = 1;
  }
  recordHostile('task spec: an isolation number no node knows', escaped);
  assert.equal(escaped, 0);
});

test('node facts: isolations a node announces are known values, each once', () => {
  const facts = (isolations: Isolation[]) => NodeFacts.fromPartial({ hostname: 'h', isolations });
  assert.doesNotThrow(() => validateRegistration('n', facts([RUNC, GVISOR])));
  assert.equal(offeredIsolationsViolation('f', []), undefined);
  const bad: [string, Isolation[], RegExp][] = [
    ['unknown', [9 as Isolation], /facts.isolations: 9 is not an isolation a node offers/],
    ['unspecified', [ANY], /0 is not an isolation a node offers/],
    ['twice', [GVISOR, GVISOR], /gvisor is listed twice/],
    ['too many', [RUNC, GVISOR, RUNC], /3 entries, over the 2 isolations/],
  ];
  for (const [name, list, re] of bad) {
    let escaped = 1;
    try {
      validateRegistration('n', facts(list));
    } catch (err) {
      if (re.test((err as Error).message)) escaped = 0;
    }
    recordHostile(`node input: facts.isolations ${name}`, escaped);
    assert.equal(escaped, 0, name);
  }
});
