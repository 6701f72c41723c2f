// The container config is where isolation is decided: every limit and lockdown field is asserted.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildContainerConfig, effectiveLimits, RUNNER_DEFAULTS, volumeNames } from '../../src/runtime/container-spec.js';
import { InvalidTaskError } from '../../src/common/errors.js';
import type { TaskExecution } from '../../src/worker/contracts.js';
import { TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';
import { WireType } from '@bufbuild/protobuf/wire';
import { recordHostile } from '../helpers/fault-ledger.js';

function exec(spec: Partial<TaskSpec> = {}, more: Partial<TaskExecution> = {}): TaskExecution {
  return {
    taskId: 't-123',
    attempt: 2,
    spec: { image: 'hivemind/busybox:1', command: ['sh', '-c', 'echo hi'], env: new Map(), limits: { cpus: 1.5, memoryBytes: 256 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 5000 }, maxOutputBytes: 0, data: [], network: 0, ...spec },
    gpuIndexes: [],
    signal: new AbortController().signal,
    onPhase: () => {},
    onPullProgress: () => {},
    onLog: () => {},
    ...more,
  };
}

test('limits: NanoCpus, Memory = MemorySwap (no swap), PidsLimit', () => {
  const c = buildContainerConfig(exec(), 'node-1');
  assert.equal(c.HostConfig.NanoCpus, 1_500_000_000);
  assert.equal(c.HostConfig.Memory, 256 * 1024 ** 2);
  assert.equal(c.HostConfig.MemorySwap, 256 * 1024 ** 2);
  assert.equal(c.HostConfig.PidsLimit, 64);
  assert.equal(c.HostConfig.DeviceRequests, undefined);
});

test('lockdown: no network, read-only root, capped tmpfs, no caps, no-new-privileges, nobody user, not privileged', () => {
  const c = buildContainerConfig(exec(), 'node-1');
  assert.equal(c.HostConfig.NetworkMode, 'none');
  assert.equal(c.NetworkDisabled, true);
  assert.equal(c.HostConfig.ReadonlyRootfs, true);
  assert.match(c.HostConfig.Tmpfs['/tmp']!, new RegExp(`size=${RUNNER_DEFAULTS.tmpfsBytes}`));
  assert.deepEqual(Object.keys(c.HostConfig.Tmpfs), ['/tmp']);
  assert.equal(c.HostConfig.ShmSize, RUNNER_DEFAULTS.tmpfsBytes, '/dev/shm is sized here, not by the daemon default');
  assert.deepEqual(c.HostConfig.CapDrop, ['ALL']);
  assert.deepEqual(c.HostConfig.CapAdd, []);
  assert.deepEqual(c.HostConfig.SecurityOpt, ['no-new-privileges']);
  assert.equal(c.HostConfig.Privileged, false);
  assert.equal(c.User, '65534:65534');
  const hc = c.HostConfig as unknown as Record<string, unknown>;
  assert.equal(hc.Binds, undefined, 'no host bind mounts');
  assert.equal(hc.PidMode, undefined);
  assert.ok(c.HostConfig.Mounts.every((m) => m.Type === 'volume'), 'only volumes, never host paths');
  assert.ok(!JSON.stringify(c).includes('docker.sock'));
});

test('volumes: /input read-only and /output writable, per task and attempt; labels and name', () => {
  const c = buildContainerConfig(exec(), 'node-1');
  const v = volumeNames('t-123', 2);
  assert.deepEqual(c.HostConfig.Mounts, [
    { Type: 'volume', Source: v.input, Target: '/input', ReadOnly: true },
    { Type: 'volume', Source: v.output, Target: '/output', ReadOnly: false },
  ]);
  assert.equal(c.name, 'hivemind-t-123-2');
  assert.deepEqual(c.Labels, { 'io.hivemind.managed': 'true', 'io.hivemind.node-id': 'node-1', 'io.hivemind.task-id': 't-123', 'io.hivemind.attempt': '2' });
});

test('env: HIVEMIND_* set by the node, task env passed through', () => {
  const c = buildContainerConfig(exec({ env: new Map([['FOO', 'bar=baz'], ['_x1', '']]) }), 'node-1');
  assert.deepEqual(c.Env, [
    'FOO=bar=baz',
    '_x1=',
    'HIVEMIND_TASK_ID=t-123',
    'HIVEMIND_ATTEMPT=2',
    'HIVEMIND_INPUT_DIR=/input',
    'HIVEMIND_OUTPUT_DIR=/output',
    'HIVEMIND_CPUS=1.5',
    `HIVEMIND_MEMORY_BYTES=${256 * 1024 ** 2}`,
  ]);
  assert.deepEqual(c.Cmd, ['sh', '-c', 'echo hi']);
});

test('env: invalid and reserved names are refused', () => {
  for (const name of ['HIVEMIND_TASK_ID', 'hivemind_x', '1ABC', 'A-B', 'A B', '']) {
    assert.throws(() => buildContainerConfig(exec({ env: new Map([[name, 'v']]) }), 'n'), InvalidTaskError, name);
  }
  assert.throws(() => buildContainerConfig(exec({ env: new Map([['A', 'x\0y']]) }), 'n'), /NUL/);
});

test('defaults apply when limits are 0 or missing', () => {
  const c = buildContainerConfig(exec({ limits: undefined, command: [] }), 'n');
  assert.equal(c.HostConfig.NanoCpus, 1e9);
  assert.equal(c.HostConfig.Memory, 512 * 1024 ** 2);
  assert.equal(c.HostConfig.MemorySwap, 512 * 1024 ** 2);
  assert.equal(c.HostConfig.PidsLimit, 256);
  assert.equal(c.Cmd, undefined, 'empty command keeps the image default');
  const l = effectiveLimits(exec({ limits: { cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 0 } }));
  assert.deepEqual(l, { cpus: 1, memoryBytes: 512 * 1024 ** 2, pids: 256, gpus: 0, timeoutMs: 3_600_000, maxOutputBytes: 1024 ** 3 });
  assert.equal(effectiveLimits(exec({ maxOutputBytes: 42 })).maxOutputBytes, 42);
  assert.equal(effectiveLimits(exec({ maxOutputBytes: 4 * 1024 ** 3 })).maxOutputBytes, 1024 ** 3, 'the node cap bounds what a task asks');
  assert.equal(effectiveLimits(exec({ maxOutputBytes: 4 * 1024 ** 3 }), { ...RUNNER_DEFAULTS, maxOutputBytes: 8 * 1024 ** 3 }).maxOutputBytes, 4 * 1024 ** 3);
});

test('GPUs are pinned to the reserved indexes', () => {
  const c = buildContainerConfig(exec({ limits: { cpus: 1, memoryBytes: 1e8, pids: 10, gpus: 2, timeoutMs: 0 } }, { gpuIndexes: [1, 3] }), 'n');
  assert.deepEqual(c.HostConfig.DeviceRequests, [{ Driver: 'nvidia', DeviceIDs: ['1', '3'], Capabilities: [['gpu']] }]);
  assert.throws(() => buildContainerConfig(exec({ limits: { cpus: 1, memoryBytes: 1e8, pids: 10, gpus: 2, timeoutMs: 0 } }, { gpuIndexes: [1] }), 'n'), InvalidTaskError);
});

test('bad identity or image is refused', () => {
  assert.throws(() => buildContainerConfig(exec({}, { taskId: '../x' }), 'n'), InvalidTaskError);
  assert.throws(() => buildContainerConfig(exec({ image: ' ' }), 'n'), /spec\.image is empty/);
});

test('privileged requests, host mounts, extra capabilities and host networking cannot be asked for: fields the protocol does not have are dropped on decode', () => {
  // A hostile master (or a newer protocol) appends fields to TaskSpec that a container config
  // might map to privileges. The spec has no such fields, so they decode to nothing.
  const w = TaskSpec.encode({ image: 'hivemind/busybox:1', command: ['id'], env: new Map(), limits: undefined, network: 0, maxOutputBytes: 0, data: [] });
  w.uint32((90 << 3) | WireType.Varint).bool(true); // privileged: true
  for (const [field, value] of [[91, '/:/host'], [92, 'SYS_ADMIN'], [93, 'host'], [94, '/var/run/docker.sock:/var/run/docker.sock']] as const) {
    w.uint32((field << 3) | WireType.LengthDelimited).string(value);
  }
  const spec = TaskSpec.decode(w.finish());
  assert.deepEqual(Object.keys(spec).filter((k) => spec[k as keyof TaskSpec] !== undefined).sort(), ['command', 'data', 'env', 'image', 'maxOutputBytes', 'network'], 'only the fields the protocol defines (network decodes to 0: none)');
  const c = buildContainerConfig(exec(spec), 'node-1');
  const hc = c.HostConfig as unknown as Record<string, unknown>;
  const escaped = c.HostConfig.Privileged !== false || hc.Binds !== undefined || c.HostConfig.CapAdd.length > 0 ||
    c.HostConfig.NetworkMode !== 'none' || JSON.stringify(c).includes('docker.sock') || JSON.stringify(c).includes('/host');
  recordHostile('task spec: privileged, host mount, SYS_ADMIN, host network and the Docker socket smuggled as extra fields', escaped, 5);
  assert.equal(escaped, false, JSON.stringify(c));
});

test('data sets: each is a read-only bind of its cache entry at its path; still no Binds, and the rest stays volumes', () => {
  const c = buildContainerConfig(
    exec({}, { dataMounts: [{ hostPath: '/var/lib/hivemind/worker/cache/entries/' + 'a'.repeat(64), containerPath: '/models/llama' }] }),
    'node-1',
  );
  const hc = c.HostConfig as unknown as Record<string, unknown>;
  assert.equal(hc.Binds, undefined, 'host paths only through Mounts, each with its ReadOnly flag');
  const binds = c.HostConfig.Mounts.filter((m) => m.Type === 'bind');
  assert.deepEqual(binds, [{ Type: 'bind', Source: '/var/lib/hivemind/worker/cache/entries/' + 'a'.repeat(64), Target: '/models/llama', ReadOnly: true }]);
  assert.equal(c.HostConfig.Mounts.filter((m) => m.Type === 'volume').length, 2);
});

test('a service replica keeps the batch lock-down and learns its service, replica index and port', () => {
  const batch = buildContainerConfig(exec(), 'node-1');
  // A replica has no timeout (it runs until stopped); the rest of its limits are the batch task's.
  const replica = buildContainerConfig(exec({ limits: { cpus: 1.5, memoryBytes: 256 * 1024 ** 2, pids: 64, gpus: 0, timeoutMs: 0 }, service: { service: 'web', replica: 2, port: 8080, healthPath: '/health', graceMs: 0 } }), 'node-1');
  assert.deepEqual(replica.HostConfig, batch.HostConfig, 'the same host config: no network, no published port, same limits');
  assert.deepEqual(replica.Env.filter((e) => !batch.Env.includes(e)), ['HIVEMIND_SERVICE=web', 'HIVEMIND_REPLICA=2', 'HIVEMIND_PORT=8080']);
  assert.ok(!batch.Env.some((e) => e.startsWith('HIVEMIND_PORT=')));
});
