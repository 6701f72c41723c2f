// Whether a worker starts on an engine that drops limits (runtime/limits-policy.ts): an engine that
// enforces every limit always; one that drops some only with --allow-unenforced-limits, and the
// refusal says which limits, why, and both ways out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LimitKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { EngineIdentity } from '../../src/runtime/engine-identity.js';
import { checkLimitsPolicy, UnenforcedLimitsError } from '../../src/runtime/limits-policy.js';
import { compileWorkerConfig } from '../../src/config/worker-config.js';

const socket = { kind: 'unix', path: '/run/user/1001/podman/podman.sock' } as const;
const docker: EngineIdentity = { engine: 'docker', product: 'Docker', rootless: false, version: '20.10.24', cgroupVersion: '1', cgroupDriver: 'cgroupfs', unenforced: [] };
const rootlessV1: EngineIdentity = {
  engine: 'podman-rootless', product: 'Podman', rootless: true, version: '4.3.1', cgroupVersion: 'v1', cgroupDriver: 'cgroupfs',
  unenforced: [LimitKind.LIMIT_KIND_CPUS, LimitKind.LIMIT_KIND_MEMORY, LimitKind.LIMIT_KIND_PIDS], unenforcedWhy: 'rootless Podman on cgroup v1 enforces none',
};

test('an engine enforcing every limit starts, with or without the opt-in', () => {
  checkLimitsPolicy(docker, socket, false);
  checkLimitsPolicy(docker, socket, true);
});

test('rootless Podman on cgroup v1 refuses to start without the opt-in, naming the limits, the socket and both ways out', () => {
  assert.throws(() => checkLimitsPolicy(rootlessV1, socket, false), (e: unknown) => {
    assert.ok(e instanceof UnenforcedLimitsError);
    assert.match(e.message, /at unix:\/\/\/run\/user\/1001\/podman\/podman\.sock \(rootless Podman 4\.3\.1/);
    assert.match(e.message, /cannot enforce cpus \(--cpus\), memory \(--memory\) and pids \(--pids\) limits \(rootless Podman on cgroup v1 enforces none\)/);
    assert.match(e.message, /use cgroup v2 with the cpu, memory and pids controllers delegated/);
    assert.match(e.message, /or start with --allow-unenforced-limits/);
    return true;
  });
  checkLimitsPolicy(rootlessV1, socket, true);
});

test('config: allowUnenforcedLimits is off by default and set by the file, the env or the flag', () => {
  assert.equal(compileWorkerConfig({ env: {}, flags: {} }).allowUnenforcedLimits, false);
  assert.equal(compileWorkerConfig({ file: { worker: { allowUnenforcedLimits: true } }, env: {}, flags: {} }).allowUnenforcedLimits, true);
  assert.equal(compileWorkerConfig({ env: { HIVEMIND_ALLOW_UNENFORCED_LIMITS: 'true' }, flags: {} }).allowUnenforcedLimits, true);
  assert.equal(compileWorkerConfig({ env: {}, flags: { allowUnenforcedLimits: true } }).allowUnenforcedLimits, true);
});
