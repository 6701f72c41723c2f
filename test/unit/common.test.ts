import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from '../../src/common/backoff.js';
import { parseDuration, parseSize } from '../../src/common/units.js';
import { sleep } from '../../src/common/sleep.js';
import { AbortedError, ConfigError } from '../../src/common/errors.js';
import { exitCodeForTask } from '../../src/cli/exit-codes.js';
import { OutcomeKind, TaskState } from '../../src/protocol/gen/hivemind/v1/common.js';

test('backoff grows exponentially, is capped, and jitters within [cap/2, cap]', () => {
  const opts = { initialMs: 100, maxMs: 1000, factor: 2 };
  assert.equal(backoffDelay(0, opts, () => 1), 100);
  assert.equal(backoffDelay(0, opts, () => 0), 50);
  assert.equal(backoffDelay(3, opts, () => 1), 800);
  assert.equal(backoffDelay(10, opts, () => 1), 1000);
  assert.equal(backoffDelay(500, opts, () => 0), 500);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(4, opts)));
  assert.ok(spread.size > 10, 'a fleet must not retry in lockstep');
});

test('sizes and durations parse like Docker flags, bad input names the fix', () => {
  assert.equal(parseSize('512m'), 512 * 1024 ** 2);
  assert.equal(parseSize('2GiB'), 2 * 1024 ** 3);
  assert.equal(parseSize('1.5k'), 1536);
  assert.equal(parseSize(42), 42);
  assert.throws(() => parseSize('12 parsecs', 'memory'), (e: unknown) => e instanceof ConfigError && /memory: "12 parsecs" is not a size/.test(e.message));
  assert.equal(parseDuration('10m'), 600_000);
  assert.equal(parseDuration('1h30m'), 5_400_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration('30'), 30_000);
  assert.throws(() => parseDuration('10 minutes'), /not a duration/);
  assert.throws(() => parseDuration('5m junk'), /not a duration/);
});

test('sleep rejects promptly when aborted', async () => {
  const ac = new AbortController();
  const started = Date.now();
  const p = sleep(10_000, ac.signal);
  ac.abort();
  await assert.rejects(p, AbortedError);
  assert.ok(Date.now() - started < 1000);
});

test('wait exit codes reflect the outcome', () => {
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_SUCCEEDED), 0);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 3 }), 3);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_EXITED, exitCode: 255 }), 123);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_TIMED_OUT, exitCode: 137 }), 124);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_OOM_KILLED, exitCode: 137 }), 137);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_CANCELLED), 130);
  assert.equal(exitCodeForTask(TaskState.TASK_STATE_FAILED, { kind: OutcomeKind.OUTCOME_KIND_START_FAILED, exitCode: 0 }), 1);
});
