// The old generation's room after a mark-compact: a fixed amount as a factor of what is live,
// 4x for a small heap (a worker streaming a result), down to 1.5x for a master holding 10,000
// nodes' streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { HEADROOM_BYTES, MAX_GROWING_PERCENT, MIN_GROWING_PERCENT, growingPercentFor } from '../../src/common/heap-tuning.js';

const MB = 1024 * 1024;

test('a small live heap grows 4x; a large one by the headroom, at least 1.5x', () => {
  assert.equal(growingPercentFor(30 * MB), MAX_GROWING_PERCENT, 'a streaming worker keeps 4x');
  assert.equal(growingPercentFor(HEADROOM_BYTES), 100, 'as much garbage room as is live: 2x');
  assert.equal(growingPercentFor(256 * MB), 50);
  assert.equal(growingPercentFor(200 * MB), 64, 'the headroom over what is live, rounded');
  assert.equal(growingPercentFor(1024 * MB), MIN_GROWING_PERCENT, 'never below 1.5x');
});

test('what a heap statistic cannot be gives the default of 4x', () => {
  for (const v of [0, -1, Number.NaN]) assert.equal(growingPercentFor(v), MAX_GROWING_PERCENT);
});
