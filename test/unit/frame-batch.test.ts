// FrameBatch (master/rpc/frame-batch.ts): the frames one thread of the master sends the other in
// one postMessage carry their calls' message bytes in one moved buffer, not one buffer each.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel } from 'node:worker_threads';
import { FrameBatch } from '../../src/master/rpc/frame-batch.js';
import type { FromThread } from '../../src/master/rpc/rpc-frames.js';

/** The message frames' bytes as text, in order. */
const texts = (frames: FromThread[]) => frames.flatMap((f) => (f.t === 'message' ? [Buffer.from(f.bytes).toString()] : []));

test('a batch\'s message bytes cross to the other thread as views of one buffer, whatever buffers they came from', async (t) => {
  const batch = new FrameBatch<FromThread>();
  // A view into the middle of a larger buffer (as a pooled Buffer is), a whole buffer, an empty message.
  const pooled = Buffer.from('xxxxfirstyyyy');
  batch.push({ t: 'message', id: 1, bytes: pooled.subarray(4, 9) });
  batch.push({ t: 'halfClose', id: 1 });
  batch.push({ t: 'message', id: 2, bytes: Buffer.from('second message') });
  batch.push({ t: 'message', id: 3, bytes: new Uint8Array(0) });
  batch.push({ t: 'message', id: 4, bytes: new Uint8Array(Buffer.from('third')) });
  assert.equal(batch.length, 5);
  const { frames, transfer } = batch.take();
  assert.equal(batch.length, 0);
  assert.equal(transfer.length, 1);
  assert.equal(transfer[0]!.byteLength, 'first'.length + 'second message'.length + 'third'.length);
  // The sources are untouched (the pooled buffer's neighbours are someone else's bytes).
  assert.equal(pooled.toString(), 'xxxxfirstyyyy');

  const { port1, port2 } = new MessageChannel();
  t.after(() => port1.close());
  const received = new Promise<FromThread[]>((resolve) => port2.once('message', resolve));
  port1.postMessage(frames, transfer);
  const got = await received;
  assert.deepEqual(texts(got), ['first', 'second message', '', 'third']);
  assert.deepEqual(got.map((f) => f.t), ['message', 'halfClose', 'message', 'message', 'message']);
  const buffers = new Set(got.flatMap((f) => (f.t === 'message' ? [f.bytes.buffer] : [])));
  assert.equal(buffers.size, 1, `the receiving thread got ${buffers.size} ArrayBuffers for one batch`);
  // The sender's copy moved: nothing of it is left on this side.
  assert.equal(transfer[0]!.byteLength, 0);
});

test('a batch with no message bytes moves no buffer, and the next batch starts empty', () => {
  const batch = new FrameBatch<FromThread>();
  batch.push({ t: 'halfClose', id: 1 });
  batch.push({ t: 'cancel', id: 2 });
  const first = batch.take();
  assert.equal(first.frames.length, 2);
  assert.deepEqual(first.transfer, []);
  batch.push({ t: 'message', id: 3, bytes: Buffer.from('abc') });
  const second = batch.take();
  assert.deepEqual(texts(second.frames), ['abc']);
  assert.equal(second.transfer[0]!.byteLength, 3);
});
