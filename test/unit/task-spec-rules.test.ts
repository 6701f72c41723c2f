// The task-spec rules master and node share: a table of accepted and refused specs, each refusal
// naming the field and the limit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidTaskError } from '../../src/common/errors.js';
import { validateTaskSpec } from '../../src/master/spec-validation.js';
import { TaskSpec, type ResourceLimits } from '../../src/protocol/gen/hivemind/v1/common.js';
import { SPEC_LIMITS, checkImageReference, checkTaskSpec } from '../../src/protocol/task-spec-rules.js';
import { buildContainerConfig } from '../../src/runtime/container-spec.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const spec = (p: Partial<TaskSpec> = {}): TaskSpec => ({ image: 'hivemind/busybox:1', command: [], env: new Map(), limits: undefined, maxOutputBytes: 0, data: [], network: 0, ...p });
const limits = (l: Partial<ResourceLimits>): ResourceLimits => ({ cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 0, ...l });
const MiB = 1024 ** 2;
const DIGEST = `sha256:${'a'.repeat(64)}`;

test('image references in Docker\'s grammar are accepted', () => {
  for (const image of [
    'alpine', 'alpine:3.20', 'hivemind/busybox:1', 'library/alpine:latest', 'docker.io/library/alpine',
    'localhost:5000/team/app:v1.2-rc_3', '127.0.0.1:1/hivemind/missing:1', 'Registry.Example.com/team/app',
    `ghcr.io/org/img@${DIGEST}`, `img:tag@${DIGEST}`, '[::1]:5000/x', 'a__b', 'a-----b/c.d', 'a'.repeat(255),
    `${'a'.repeat(255)}:${'t'.repeat(128)}`,
  ]) {
    assert.doesNotThrow(() => checkImageReference(image), image);
  }
});

test('image references Docker would refuse are refused, saying why', () => {
  const cases: [string, RegExp][] = [
    ['', /spec\.image is empty/],
    ['   ', /spec\.image is empty/],
    ['busybox\0', /spec\.image "busybox\\u0000" contains a control character/],
    ['busybox\n', /contains a control character/],
    ['busybox\x7f', /contains a control character/],
    ['bus box', /spec\.image "bus box" contains whitespace/],
    ['busybox\u00a0', /contains whitespace/],
    ['Alpine', /"Alpine" is not a valid image reference \(the repository path must be lowercase\)/],
    ['registry.io/Team/app:1', /must be lowercase/],
    // A first component without '.' or ':' is not a registry to Docker: it must be lowercase too.
    ['Hivemind/busybox:1', /"Hivemind\/busybox:1" is not a valid image reference \(the repository path must be lowercase\)/],
    ['LOCALHOST/x', /must be lowercase/],
    ['alpine:', /not a valid image reference: expected \[registry\[:port\]\/\]path\[:tag\]\[@digest\]/],
    [':tag', /not a valid image reference/],
    ['a/', /not a valid image reference/],
    ['a//b', /not a valid image reference/],
    ['-a', /not a valid image reference/],
    ['a_-b', /not a valid image reference/],
    ['alpine@sha256:abc', /not a valid image reference/],
    [`alpine:${'t'.repeat(129)}`, /not a valid image reference/],
    ['alpine:.tag', /not a valid image reference/],
    ['ünicode', /not a valid image reference/],
    ['a'.repeat(256), /the image name is 256 bytes, over Docker's maximum of 255/],
    ['a'.repeat(513), /spec\.image is 513 bytes, over the maximum of 512/],
  ];
  for (const [image, re] of cases) {
    assert.throws(() => checkImageReference(image), (e) => e instanceof InvalidTaskError && re.test(e.message), `${JSON.stringify(image)} ${re}`);
  }
});

test('specs within every limit are accepted, including the edges and env names that are Object members', () => {
  const ok: TaskSpec[] = [
    spec(),
    spec({ limits: limits({ cpus: 0.01, memoryBytes: 6 * MiB, pids: 1, gpus: 1, timeoutMs: 1 }), maxOutputBytes: 1 }),
    spec({ limits: limits({ cpus: SPEC_LIMITS.maxCpus, memoryBytes: SPEC_LIMITS.maxMemoryBytes, pids: SPEC_LIMITS.maxPids, gpus: SPEC_LIMITS.maxGpus, timeoutMs: SPEC_LIMITS.maxTimeoutMs }), maxOutputBytes: SPEC_LIMITS.maxOutputBytes }),
    spec({ env: new Map([['__proto__', 'p'], ['constructor', 'c'], ['toString', 't'], ['_', ''], ['A'.repeat(SPEC_LIMITS.maxEnvNameBytes), 'v']]) }),
    spec({ command: ['sh', '-c', 'x'.repeat(SPEC_LIMITS.maxArgBytes)] }),
    spec({ env: new Map([['A', 'x'.repeat(SPEC_LIMITS.maxArgBytes - 2)]]) }),
    spec({ command: Array.from({ length: SPEC_LIMITS.maxCommandArgs }, () => 'a') }),
  ];
  for (const s of ok) assert.doesNotThrow(() => checkTaskSpec(s));
});

test('specs no node can run are refused, naming the field and the limit', () => {
  const big = 'x'.repeat(100 * 1024);
  const cases: [TaskSpec, RegExp][] = [
    [spec({ limits: limits({ cpus: 1e-9 }) }), /^spec\.limits\.cpus is 1e-9, under the minimum of 0\.01 \(0 means the node's default\)$/],
    [spec({ limits: limits({ cpus: 0.001 }) }), /^spec\.limits\.cpus is 0\.001, under the minimum of 0\.01/],
    [spec({ limits: limits({ cpus: 0.0099 }) }), /under the minimum of 0\.01/],
    [spec({ limits: limits({ cpus: -1 }) }), /^spec\.limits\.cpus must be a number ≥ 0, got -1$/],
    [spec({ limits: limits({ cpus: Number.NaN }) }), /spec\.limits\.cpus must be a number ≥ 0, got NaN/],
    [spec({ limits: limits({ cpus: Number.POSITIVE_INFINITY }) }), /spec\.limits\.cpus must be a number ≥ 0, got Infinity/],
    [spec({ limits: limits({ cpus: 1025 }) }), /^spec\.limits\.cpus is 1025, over the maximum of 1024$/],
    [spec({ limits: limits({ memoryBytes: 1024 }) }), /^spec\.limits\.memory_bytes is 1\.0 KiB, under the minimum of 6\.0 MiB/],
    [spec({ limits: limits({ memoryBytes: 17 * 1024 ** 4 }) }), /spec\.limits\.memory_bytes is 17\.0 TiB, over the maximum of 16\.0 TiB/],
    [spec({ limits: limits({ memoryBytes: 2 ** 60 }) }), /spec\.limits\.memory_bytes must be a whole number/],
    [spec({ limits: limits({ pids: SPEC_LIMITS.maxPids + 1 }) }), /spec\.limits\.pids is 4194305, over the maximum of 4194304/],
    [spec({ limits: limits({ gpus: 65 }) }), /spec\.limits\.gpus is 65, over the maximum of 64/],
    [spec({ limits: limits({ gpus: 1.5 }) }), /spec\.limits\.gpus must be a whole number ≥ 0, got 1\.5/],
    [spec({ limits: limits({ timeoutMs: 365 * 86_400_000 }) }), /spec\.limits\.timeout_ms is 31536000000, over the maximum of 2592000000/],
    [spec({ maxOutputBytes: 2 * 1024 ** 4 }), /spec\.max_output_bytes is 2\.0 TiB, over the maximum of 1\.0 TiB/],
    [spec({ command: Array.from({ length: 4097 }, () => 'a') }), /spec\.command has 4097 arguments, over the maximum of 4096/],
    [spec({ command: ['  ', 'x'] }), /spec\.command\[0\] is empty/],
    [spec({ command: ['ok', 'a\0b'] }), /spec\.command\[1\] contains a NUL byte/],
    [spec({ command: ['sh', 'x'.repeat(SPEC_LIMITS.maxArgBytes + 1)] }), /spec\.command\[1\] is 131072 bytes, over the maximum of 131071 per argument/],
    [spec({ command: ['sh', big, big, big] }), /^the task spec is 300\.\d KiB encoded, over the maximum of 256\.0 KiB/],
    [spec({ env: new Map(Array.from({ length: 1025 }, (_, i) => [`V${i}`, ''])) }), /spec\.env has 1025 variables, over the maximum of 1024/],
    [spec({ env: new Map([['A-B', 'x']]) }), /spec\.env: "A-B" is not a valid variable name/],
    [spec({ env: new Map([['1X', 'x']]) }), /spec\.env: "1X" is not a valid variable name/],
    [spec({ env: new Map([['', 'x']]) }), /spec\.env: "" is not a valid variable name/],
    [spec({ env: new Map([['A=B', 'x']]) }), /not a valid variable name/],
    [spec({ env: new Map([['HIVEMIND_TASK_ID', 'x']]) }), /spec\.env: HIVEMIND_TASK_ID is reserved/],
    [spec({ env: new Map([['hivemind_x', 'x']]) }), /hivemind_x is reserved/],
    [spec({ env: new Map([['A', 'x\0y']]) }), /spec\.env: the value of A contains a NUL byte/],
    [spec({ env: new Map([['A'.repeat(257), 'x']]) }), /spec\.env: the name "A{80}…" is 257 bytes, over the maximum of 256/],
    [spec({ env: new Map([['A', 'x'.repeat(SPEC_LIMITS.maxArgBytes - 1)]]) }), /spec\.env: A=value is 131072 bytes, over the maximum of 131071 per variable/],
  ];
  let escaped = 0;
  for (const [s] of cases) {
    try {
      checkTaskSpec(s);
      escaped++;
    } catch {
      // asserted below
    }
  }
  recordHostile('spec rules: invalid specs refused', escaped, cases.length);
  for (const [s, re] of cases) {
    assert.throws(() => checkTaskSpec(s), (e) => e instanceof InvalidTaskError && re.test(e.message), String(re));
  }
});

test('the master at submission and the node before Docker refuse with the same message', () => {
  const bad = [spec({ image: 'busybox\0' }), spec({ limits: limits({ cpus: 0.001 }) }), spec({ command: ['sh', 'x'.repeat(300 * 1024)] })];
  const messageOf = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      if (e instanceof InvalidTaskError) return e.message;
    }
    return 'accepted';
  };
  for (const s of bad) {
    const atMaster = messageOf(() => validateTaskSpec(s));
    const atNode = messageOf(() => buildContainerConfig({ taskId: 't1', attempt: 1, spec: s, gpuIndexes: [] } as never, 'node'));
    assert.notEqual(atMaster, 'accepted');
    assert.equal(atNode, atMaster);
  }
});

test('an env variable named __proto__ survives the wire and reaches the container config', () => {
  const s = spec({ env: new Map([['OK_VAR', '1'], ['__proto__', 'kept'], ['constructor', 'c']]) });
  const decoded = TaskSpec.decode(TaskSpec.encode(s).finish());
  assert.deepEqual([...decoded.env], [['OK_VAR', '1'], ['__proto__', 'kept'], ['constructor', 'c']]);
  const config = buildContainerConfig({ taskId: 't1', attempt: 1, spec: decoded, gpuIndexes: [] } as never, 'node');
  assert.deepEqual(config.Env!.slice(0, 3), ['OK_VAR=1', '__proto__=kept', 'constructor=c']);
});

test('a service replica\'s role is held to the same rules at the master and on the node: port, no timeout, a plain health path, a bounded grace', () => {
  const role = (r: Partial<NonNullable<TaskSpec['service']>>) => ({ service: 'web', replica: 0, port: 8000, healthPath: '/health', graceMs: 10_000, ...r });
  assert.doesNotThrow(() => checkTaskSpec(spec({ service: role({}) })));
  assert.doesNotThrow(() => checkTaskSpec(spec({ service: role({ healthPath: '', graceMs: 0 }) })));
  const cases: [string, TaskSpec, RegExp][] = [
    ['port 0', spec({ service: role({ port: 0 }) }), /spec\.service\.port must be between 1 and 65535, got 0/],
    ['port 70000', spec({ service: role({ port: 70_000 }) }), /spec\.service\.port must be between 1 and 65535, got 70000/],
    ['a timeout', spec({ service: role({}), limits: limits({ timeoutMs: 1000 }) }), /spec\.limits\.timeout_ms must be 0 for a service/],
    ['a health path with CRLF (request smuggling into the replica)', spec({ service: role({ healthPath: '/h HTTP/1.1\r\nX: y' }) }), /must be printable ASCII without spaces/],
    ['a relative health path', spec({ service: role({ healthPath: 'health' }) }), /must start with "\/"/],
    ['a 300-character health path', spec({ service: role({ healthPath: `/${'a'.repeat(299)}` }) }), /health_path is 300 characters, over the maximum of 256/],
    ['a grace of a day', spec({ service: role({ graceMs: 86_400_000 }) }), /spec\.service\.grace_ms must be between 0 and 600000/],
  ];
  for (const [what, s, message] of cases) {
    let refused = false;
    try {
      checkTaskSpec(s);
    } catch (err) {
      refused = err instanceof InvalidTaskError && message.test(err.message);
    }
    recordHostile(`replica spec on the node: ${what}`, !refused);
    assert.ok(refused, what);
  }
});
