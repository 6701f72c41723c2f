import { test } from 'node:test';
import assert from 'node:assert/strict';
import { progressBar, statusLine } from '../../src/cli/status-line.js';

function fakeStream(isTTY: boolean, columns = 40) {
  const out: string[] = [];
  return { out, stream: { isTTY, columns, write: (t: string) => (out.push(t), true) } };
}

test('a status line writes nothing when the stream is not a terminal', () => {
  const { out, stream } = fakeStream(false);
  const line = statusLine(stream);
  line.update('uploading 1 MiB', true);
  line.done('done');
  assert.deepEqual(out, []);
});

test('a status line redraws in place at most every 100 ms, cuts to the width and clears when done', () => {
  let t = 0;
  const { out, stream } = fakeStream(true, 12);
  const line = statusLine(stream, () => t);
  line.update('a');
  t = 50;
  line.update('b');
  t = 150;
  line.update('a very long line\nthat wraps');
  line.done('finished');
  line.update('late', true);
  assert.deepEqual(out, ['\r\x1b[2Ka', '\r\x1b[2Ka very lon…', '\r\x1b[2K', 'finished\n']);
});

test('a progress bar clamps its fraction and shows the percentage', () => {
  assert.equal(progressBar(0.42, 10), '[####......]  42%');
  assert.equal(progressBar(2, 4), '[####] 100%');
  assert.equal(progressBar(Number.NaN, 4), '[....]   0%');
});
