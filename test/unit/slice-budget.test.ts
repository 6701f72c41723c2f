// The RPC link's frames per slice (src/master/rpc/slice-budget.ts): bounded by what a frame cost
// with its continuations, up at once, down gradually, never below one frame.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SliceBudget } from '../../src/master/rpc/slice-budget.js';

test('before anything is measured a slice is bounded by its time alone', () => {
  assert.equal(new SliceBudget(10).maxFrames(), Number.POSITIVE_INFINITY);
});

test('frames whose continuations ran long shrink the next slice at once', () => {
  const b = new SliceBudget(10);
  b.observe(100, 10); // 0.1 ms a frame
  assert.equal(b.maxFrames(), 100);
  // 16 submissions: an 18 ms slice and 35 ms of continuations after it.
  b.observe(16, 53);
  assert.equal(b.maxFrames(), 3, '10 ms at ~3.3 ms a frame');
});

test('cheap frames let the count grow back a little at a time', () => {
  const b = new SliceBudget(10);
  b.observe(16, 53);
  const counts: number[] = [];
  for (let i = 0; i < 12; i++) {
    b.observe(b.maxFrames(), b.maxFrames() * 0.1);
    counts.push(b.maxFrames());
  }
  for (let i = 1; i < counts.length; i++) assert.ok(counts[i]! >= counts[i - 1]!, `never shrinks on cheaper frames: ${counts.join(' ')}`);
  assert.ok(counts[0]! < 10, `not back at once: ${counts.join(' ')}`);
  assert.ok(counts.at(-1)! >= 50, `back near the cheap frames' count after a dozen slices: ${counts.join(' ')}`);
});

test('at least one frame, however costly; empty slices and nonsense measure nothing', () => {
  const b = new SliceBudget(10);
  b.observe(1, 500);
  assert.equal(b.maxFrames(), 1);
  b.observe(0, 5);
  b.observe(3, Number.NaN);
  b.observe(2, -1);
  assert.equal(b.maxFrames(), 1);
});
