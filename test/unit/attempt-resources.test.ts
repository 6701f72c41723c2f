// An attempt's set-up in Docker, with a fake engine whose calls are held open until released: the
// steps that need nothing of each other run side by side (the two volumes; the staging container's
// removal and the task container's creation), and a failure of one still leaves the other's
// resource listed for the cleanup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Readable } from 'node:stream';
import { silentLogger } from '../../src/common/logger.js';
import { AttemptResources, needsStaging, settledAll, type Created } from '../../src/runtime/attempt-resources.js';
import type { ContainerCreateConfig, ContainerEngine } from '../../src/runtime/container-engine.js';
import { RUNNER_DEFAULTS, buildContainerConfig } from '../../src/runtime/container-spec.js';
import type { OutputVolumes } from '../../src/runtime/output-volume.js';
import type { TaskExecution } from '../../src/worker/contracts.js';

/** Each call is logged when it starts and waits until `release(name)` (or fails with `fail(name)`). */
class GatedCalls {
  readonly started: string[] = [];
  private readonly gates = new Map<string, { resolve: () => void; reject: (e: Error) => void }>();
  call(name: string): Promise<void> {
    this.started.push(name);
    return new Promise((resolve, reject) => this.gates.set(name, { resolve, reject }));
  }
  async release(name: string, err?: Error): Promise<void> {
    await until(() => this.gates.has(name), name);
    const g = this.gates.get(name)!;
    this.gates.delete(name);
    if (err) g.reject(err);
    else g.resolve();
  }
}

async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 1000; i++) {
    if (cond()) return;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`never happened: ${what}`);
}

function fakes(calls: GatedCalls, attachment: unknown = { driverOptions: { type: 'ext4', device: '/dev/loop7', o: 'nosuid,nodev' } }) {
  const configs: ContainerCreateConfig[] = [];
  const engine = {
    createVolume: (name: string) => calls.call(`createVolume ${name.endsWith('-output') ? 'output' : 'input'}`),
    createContainer: async (c: ContainerCreateConfig) => {
      configs.push(c);
      const staging = c.name.endsWith('-staging');
      await calls.call(`createContainer ${staging ? 'staging' : 'task'}`);
      return staging ? 'staging-id' : 'task-id';
    },
    putArchive: async (_id: string, path: string, tar: Readable) => {
      tar.resume();
      await calls.call(`putArchive ${path}`);
    },
    removeContainer: (id: string) => calls.call(`removeContainer ${id}`),
  } as unknown as ContainerEngine;
  const outputVolumes = {
    create: async () => {
      await calls.call('outputFs');
      return attachment;
    },
  } as unknown as OutputVolumes;
  return Object.assign(new AttemptResources(engine, { defaults: { ...RUNNER_DEFAULTS }, outputVolumes, cleanupTimeoutMs: 1000 }), { configs });
}

const exec = {
  taskId: 't1',
  attempt: 1,
  spec: { image: 'busybox', command: ['true'], env: new Map(), limits: { cpus: 1, memoryBytes: 1 << 26, gpus: 0, pids: 64, timeoutMs: 0 }, maxOutputBytes: 0, data: [], network: 0 },
  gpuIndexes: [],
  signal: new AbortController().signal,
} as unknown as TaskExecution;

test('attempt resources: both volumes are made at once; a failed one still leaves the other listed for the cleanup', async () => {
  const calls = new GatedCalls();
  const r = fakes(calls);
  const created: Created = { containers: [], volumes: [], outputFs: [] };
  const made = r.createVolumes(exec, 'n1', created);
  // The output filesystem is being made while the input volume's creation is still open.
  await until(() => calls.started.includes('outputFs'), 'the output filesystem started');
  assert.ok(calls.started.includes('createVolume input'), 'the input volume started too');
  await calls.release('outputFs');
  await calls.release('createVolume output', new Error('engine said no'));
  let settled = false;
  const outcome = made.then(() => 'ok', (e: Error) => e.message).finally(() => (settled = true));
  await new Promise((r) => setImmediate(r));
  assert.equal(settled, false, 'the failure waits for the input volume to settle');
  await calls.release('createVolume input');
  assert.equal(await outcome, 'engine said no');
  // And when both succeed, whether /output's root is the task user's (a filesystem was made).
  const calls2 = new GatedCalls();
  const ok = fakes(calls2).createVolumes(exec, 'n1', { containers: [], volumes: [], outputFs: [] });
  for (const c of ['outputFs', 'createVolume output', 'createVolume input']) await calls2.release(c);
  assert.deepEqual(await ok, { outputRootOwned: true });
  assert.deepEqual(created, { containers: [], volumes: ['hivemind-t1-1-input'], outputFs: ['hivemind-t1-1-output'] });
});

test('attempt resources: the task container is created while the filled staging container is removed', async () => {
  const calls = new GatedCalls();
  const r = fakes(calls);
  const created: Created = { containers: [], volumes: [], outputFs: [] };
  const config = buildContainerConfig(exec, 'n1');
  // A plain /output (no filesystem of its own): its root is given to the task user through the staging container.
  const made = r.createContainer(exec, config, created, silentLogger(), { outputRootOwned: false });
  await calls.release('createContainer staging');
  await calls.release('putArchive /');
  await until(() => calls.started.includes('removeContainer staging-id'), 'the staging removal started');
  assert.ok(calls.started.includes('createContainer task'), 'the task container is being created beside it');
  assert.ok(calls.started.indexOf('putArchive /') < calls.started.indexOf('createContainer task'), 'only once the volume roots are in place');
  await calls.release('createContainer task');
  await calls.release('removeContainer staging-id');
  assert.equal(await made, 'task-id');
  assert.deepEqual(created.containers, ['task-id']);
});

test('attempt resources: without input and with an /output filesystem the task user owns, no staging container is made', async () => {
  const calls = new GatedCalls();
  const r = fakes(calls);
  const created: Created = { containers: [], volumes: [], outputFs: [] };
  const made = r.createContainer(exec, buildContainerConfig(exec, 'n1'), created, silentLogger(), { outputRootOwned: true });
  await calls.release('createContainer task');
  assert.equal(await made, 'task-id');
  assert.deepEqual(calls.started, ['createContainer task']);
  assert.deepEqual(created.containers, ['task-id']);
  // An input to unpack, or a plain /output, still needs one.
  assert.equal(needsStaging({ inputFile: '/spool/t1-1.input.tar.gz' }, { outputRootOwned: true }), true);
  assert.equal(needsStaging({}, { outputRootOwned: false }), true);
  assert.equal(needsStaging({}, { outputRootOwned: true }), false);
});

test('attempt resources: an /output filesystem the worker mounted (Podman) is bound in, with no engine volume for it', async () => {
  const calls = new GatedCalls();
  const r = fakes(calls, { hostPath: '/data/output-fs/hivemind-t1-1-output.mnt' });
  const created: Created = { containers: [], volumes: [], outputFs: [] };
  const made = r.createVolumes(exec, 'n1', created);
  await calls.release('outputFs');
  await calls.release('createVolume input');
  const volumes = await made;
  assert.deepEqual(volumes, { outputRootOwned: true, outputHostPath: '/data/output-fs/hivemind-t1-1-output.mnt' });
  assert.ok(!calls.started.includes('createVolume output'));
  assert.deepEqual(created, { containers: [], volumes: ['hivemind-t1-1-input'], outputFs: ['hivemind-t1-1-output'] });
  const container = r.createContainer(exec, buildContainerConfig(exec, 'n1'), created, silentLogger(), volumes);
  await calls.release('createContainer task');
  assert.equal(await container, 'task-id');
  const mounts = r.configs[0]!.HostConfig.Mounts;
  assert.deepEqual(mounts.find((m) => m.Target === '/output'), { Type: 'bind', Source: '/data/output-fs/hivemind-t1-1-output.mnt', Target: '/output', ReadOnly: false });
  assert.deepEqual(mounts.find((m) => m.Target === '/input'), { Type: 'volume', Source: 'hivemind-t1-1-input', Target: '/input', ReadOnly: true });
});

test('settledAll: the values in order; the first failure in order, thrown only once all settled', async () => {
  assert.deepEqual(await settledAll([Promise.resolve(1), Promise.resolve('a')]), [1, 'a']);
  let lateDone = false;
  const late = new Promise<void>((r) => setTimeout(() => ((lateDone = true), r()), 20));
  await assert.rejects(settledAll([Promise.reject(new Error('first')), late, Promise.reject(new Error('second'))]), /first/);
  assert.equal(lateDone, true);
});
