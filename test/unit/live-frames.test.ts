// LiveFrames (runtime/live-frames.ts): the record of a stream's live frames, matched in order
// against the engine's log at the end.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LiveFrames, MAX_RECORDS, frameHash } from '../../src/runtime/live-frames.js';

const b = (s: string) => Buffer.from(s);

test('the matcher takes the live frames in order by time and content; others of the same time are missed', () => {
  const live = new LiveFrames();
  live.add(5n, b('a'));
  live.add(5n, b('c'));
  live.add(7n, b('e'));
  assert.equal(live.oldestNs, 5n);
  assert.equal(live.latestNs, 7n);
  const seen = live.matcher();
  assert.deepEqual([seen(4n, b('old')), seen(5n, b('a')), seen(5n, b('b')), seen(5n, b('c')), seen(6n, b('d')), seen(7n, b('e')), seen(7n, b('f'))], [true, true, false, true, false, true, false]);
});

test('a live frame the engine no longer holds (its log rotated) does not stop the matching', () => {
  const live = new LiveFrames();
  for (const [t, s] of [[1n, 'gone'], [2n, 'x'], [3n, 'y']] as const) live.add(t, b(s));
  const seen = live.matcher();
  assert.deepEqual([seen(2n, b('x')), seen(3n, b('y')), seen(3n, b('z'))], [true, true, false]);
});

test(`past ${MAX_RECORDS} frames the oldest are forgotten: frames of the oldest time kept count as seen, not sent twice`, () => {
  const live = new LiveFrames();
  // All of one second, as Podman stamps them, and more of them than are remembered.
  const n = MAX_RECORDS + 1000;
  for (let i = 0; i < n; i++) live.add(9n, b(`line${i}`));
  assert.equal(live.size, MAX_RECORDS);
  const seen = live.matcher();
  let missed = 0;
  for (let i = 0; i < n; i++) if (!seen(9n, b(`line${i}`))) missed++;
  assert.equal(missed, 0);
  assert.equal(seen(10n, b('after')), false);
});

test('frameHash is FNV-1a over the bytes', () => {
  assert.equal(frameHash(b('')), 0x811c9dc5);
  assert.equal(frameHash(b('a')), 0xe40c292c);
  assert.notEqual(frameHash(b('line1\n')), frameHash(b('line2\n')));
});
