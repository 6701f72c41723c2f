import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { HivemindError } from '../../src/common/errors.js';
import { GpuProbeError } from '../../src/worker/resources/gpu-probe.js';
import { ProgramNotFoundError } from '../../src/tunnel/command-runner.js';
import { NotConnectedError, describeGrpcError, grpcStatusOf, isRetryable } from '../../src/protocol/grpc-errors.js';
import { OutcomeKind } from '../../src/protocol/gen/hivemind/v1/common.js';
import { abortOutcomeKind, asAbortReason } from '../../src/worker/contracts.js';
import { abortOutcome } from '../../src/worker/task-outcome.js';

test('errors thrown outside common/errors.ts derive from HivemindError, with a stable code and their own name', () => {
  const cause = new Error('spawn ENOENT');
  const gpu = new GpuProbeError('nvidia-smi failed: NVML mismatch', { cause });
  assert.ok(gpu instanceof HivemindError);
  assert.equal(gpu.code, 'GPU_PROBE_FAILED');
  assert.equal(gpu.name, 'GpuProbeError');
  assert.equal(gpu.message, 'nvidia-smi failed: NVML mismatch');
  assert.equal(gpu.cause, cause);

  const missing = new ProgramNotFoundError('wg', { cause });
  assert.ok(missing instanceof HivemindError);
  assert.equal(missing.code, 'PROGRAM_NOT_FOUND');
  assert.equal(missing.name, 'ProgramNotFoundError');
  assert.equal(missing.message, 'wg: not found');
  assert.equal(missing.file, 'wg');
  assert.equal(missing.cause, cause);
});

test('not connected to the master: a HivemindError that is retried like the master answering UNAVAILABLE', () => {
  const err = new NotConnectedError();
  assert.ok(err instanceof HivemindError);
  assert.equal(err.code, 'MASTER_NOT_CONNECTED');
  assert.equal(err.message, 'not connected to the master');
  assert.equal(describeGrpcError(err), 'not connected to the master');
  assert.equal(grpcStatusOf(err), status.UNAVAILABLE);
  assert.equal(isRetryable(err), true);
});

test('an abort reason decides the outcome kind in one place, for the runner and the worker alike', () => {
  assert.equal(asAbortReason('shutdown'), 'shutdown');
  assert.equal(asAbortReason('superseded'), 'superseded');
  assert.equal(asAbortReason('cancelled'), 'cancelled');
  for (const other of [undefined, 'timeout', new DOMException('aborted', 'AbortError'), 42]) assert.equal(asAbortReason(other), 'cancelled');
  assert.equal(abortOutcomeKind('shutdown'), OutcomeKind.OUTCOME_KIND_SHUTDOWN);
  assert.equal(abortOutcomeKind('cancelled'), OutcomeKind.OUTCOME_KIND_CANCELLED);
  assert.equal(abortOutcomeKind('superseded'), OutcomeKind.OUTCOME_KIND_CANCELLED);
  for (const r of ['shutdown', 'superseded', 'cancelled', undefined]) assert.equal(abortOutcome(r).kind, abortOutcomeKind(asAbortReason(r)));
});
