// The log tail keeps the end of a log within its byte cap.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogTail } from '../../src/runtime/log-tail.js';

test('keeps everything under the cap', () => {
  const t = new LogTail(100);
  t.push(Buffer.from('a\n'));
  t.push(Buffer.from('b\n'));
  assert.equal(t.toString(), 'a\nb\n');
  assert.equal(t.droppedBytes, 0);
});

test('keeps exactly the last maxBytes across many chunks', () => {
  const t = new LogTail(10);
  for (let i = 0; i < 100; i++) t.push(Buffer.from(`line${i}\n`));
  assert.equal(t.byteLength, 10);
  assert.equal(t.toString(), 'e98\nline99\n'.slice(-10));
  assert.ok(t.droppedBytes > 0);
});

test('one chunk bigger than the cap keeps its end', () => {
  const t = new LogTail(4);
  t.push(Buffer.from('xx'));
  t.push(Buffer.from('0123456789'));
  assert.equal(t.toString(), '6789');
  assert.equal(t.droppedBytes, 8);
});

test('a cut inside a multi-byte character does not show garbage', () => {
  const t = new LogTail(5);
  t.push(Buffer.from('ab€cd')); // € is 3 bytes: e2 82 ac
  assert.equal(t.toBuffer().length, 5);
  assert.equal(t.toString(), '€cd');
  const u = new LogTail(4);
  u.push(Buffer.from('ab€cd'));
  assert.equal(u.toString(), 'cd');
});

test('rejects a non-positive cap', () => {
  assert.throws(() => new LogTail(0), RangeError);
});

test('replaceWith starts again from the given chunks: their end is kept, what came before is dropped', () => {
  const t = new LogTail(10);
  t.push(Buffer.from('stale stuff'));
  t.replaceWith([Buffer.from('one\n'), Buffer.from('two\n'), Buffer.from('three\n')]);
  assert.equal(t.toString(), 'two\nthree\n');
  assert.equal(t.droppedBytes, 4);
  const short = new LogTail(100);
  short.push(Buffer.from('x'));
  short.replaceWith([Buffer.from('a'), Buffer.from('b')]);
  assert.equal(short.toString(), 'ab');
  assert.equal(short.droppedBytes, 0);
});
