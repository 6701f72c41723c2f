// Submit-time validation of task specs: precise messages for each kind of mistake.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { InvalidTaskError } from '../../src/common/errors.js';
import { validateMaxAttempts, validateTaskSpec } from '../../src/master/spec-validation.js';
import type { ResourceLimits, TaskSpec } from '../../src/protocol/gen/hivemind/v1/common.js';

const spec = (p: Partial<TaskSpec>): TaskSpec => ({ image: '', command: [], env: new Map(), limits: undefined, maxOutputBytes: 0, data: [], network: 0, ...p });
const limits = (l: Partial<ResourceLimits>): ResourceLimits => ({ cpus: 0, memoryBytes: 0, pids: 0, gpus: 0, timeoutMs: 0, ...l });

test('valid specs pass, trimmed', () => {
  assert.equal(validateTaskSpec(spec({ image: ' alpine:3.20 ', env: new Map([['MY_VAR', 'x']]), limits: limits({ cpus: 0.5, memoryBytes: 64 * 1024 ** 2 }) })).image, 'alpine:3.20');
});

test('each mistake is named', () => {
  const cases: [TaskSpec | undefined, RegExp][] = [
    [undefined, /no spec/],
    [spec({ image: '  ' }), /image is empty/],
    [spec({ image: 'a b' }), /spec\.image "a b" contains whitespace/],
    [spec({ image: 'Alpine' }), /not a valid image reference \(the repository path must be lowercase\)/],
    [spec({ image: 'x', command: ['ok', 'a\0b'] }), /command\[1\] contains a NUL/],
    [spec({ image: 'x', env: new Map([['1X', 'v']]) }), /"1X" is not a valid variable name/],
    [spec({ image: 'x', env: new Map([['hivemind_id', 'v']]) }), /hivemind_id is reserved/],
    [spec({ image: 'x', limits: limits({ cpus: -1 }) }), /limits\.cpus must be a number ≥ 0, got -1/],
    [spec({ image: 'x', limits: limits({ cpus: Number.NaN }) }), /limits\.cpus must be a number ≥ 0, got NaN/],
    [spec({ image: 'x', limits: limits({ cpus: 5000 }) }), /limits\.cpus is 5000, over the maximum of 1024/],
    [spec({ image: 'x', limits: limits({ memoryBytes: 1024 }) }), /limits\.memory_bytes is 1.0 KiB, under the minimum of 6.0 MiB/],
    [spec({ image: 'x', limits: limits({ gpus: 1.5 }) }), /limits\.gpus must be a whole number ≥ 0, got 1.5/],
    [spec({ image: 'x', limits: limits({ timeoutMs: 365 * 86_400_000 }) }), /limits\.timeout_ms/],
  ];
  for (const [s, re] of cases) assert.throws(() => validateTaskSpec(s), (e) => e instanceof InvalidTaskError && re.test(e.message), String(re));
});

test('max attempts: 0 = default, otherwise 1..100', () => {
  assert.equal(validateMaxAttempts(0, 3), 3);
  assert.equal(validateMaxAttempts(5, 3), 5);
  assert.throws(() => validateMaxAttempts(101, 3), /between 1 and 100/);
});
