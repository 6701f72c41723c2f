// The shared transfer pieces (resumable verified download, upload with a checksum trailer, the
// messages of a streaming call) against hand-written fake calls and real temp files.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import type { ClientReadableStream, ClientWritableStream } from '@grpc/grpc-js';
import { downloadResumable, type OffsetChunk } from '../../src/transfer/resumable-download.js';
import { sendWithTrailer } from '../../src/transfer/checksum-upload.js';
import { callMessages } from '../../src/transfer/call-messages.js';
import { CHUNK_SIZE } from '../../src/protocol/transport.js';

const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'hm-transfer-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/** A sender of `content` from any offset, in pieces of `piece` bytes; records the offsets asked for. */
function sender(content: Buffer, piece = 1000) {
  const asked: number[] = [];
  const fetch = async function* (offset: number): AsyncGenerator<OffsetChunk> {
    asked.push(offset);
    for (let at = offset; at < content.length; at += piece) yield { offset: at, data: content.subarray(at, at + piece) };
  };
  return { asked, fetch };
}

const outOfOrder = (expected: number, got: number) => new Error(`expected ${expected}, got ${got}`);

test('a download from scratch writes every byte and returns the whole file\'s sha256', async (t) => {
  const file = join(await tempDir(t), 'in.tar.gz');
  const content = randomBytes(10_500);
  const s = sender(content);
  const got = await downloadResumable({ file, fetch: s.fetch, outOfOrder });
  assert.deepEqual(got, { size: content.length, sha256: sha(content), resumedFrom: 0 });
  assert.deepEqual(s.asked, [0]);
  assert.equal(Buffer.compare(await readFile(file), content), 0);
});

test('a download resumes from the bytes already in the file, and the sha256 covers them too', async (t) => {
  const file = join(await tempDir(t), 'in.tar.gz');
  const content = randomBytes(10_500);
  await writeFile(file, content.subarray(0, 4_321));
  const s = sender(content);
  const got = await downloadResumable({ file, fetch: s.fetch, outOfOrder });
  assert.deepEqual(got, { size: content.length, sha256: sha(content), resumedFrom: 4_321 });
  assert.deepEqual(s.asked, [4_321]);
  assert.equal(Buffer.compare(await readFile(file), content), 0);
});

test('with a known size, a complete file is not fetched again and a longer one starts over', async (t) => {
  const dir = await tempDir(t);
  const content = randomBytes(3_000);
  const complete = join(dir, 'complete');
  await writeFile(complete, content);
  const s1 = sender(content);
  assert.deepEqual(await downloadResumable({ file: complete, size: content.length, fetch: s1.fetch, outOfOrder }), { size: 3_000, sha256: sha(content), resumedFrom: 3_000 });
  assert.deepEqual(s1.asked, []);

  const longer = join(dir, 'longer');
  await writeFile(longer, randomBytes(5_000));
  const s2 = sender(content);
  assert.deepEqual(await downloadResumable({ file: longer, size: content.length, fetch: s2.fetch, outOfOrder }), { size: 3_000, sha256: sha(content), resumedFrom: 0 });
  assert.deepEqual(s2.asked, [0]);
  assert.equal(Buffer.compare(await readFile(longer), content), 0);
});

test('a chunk that does not follow on is the caller\'s error, and the bytes before it stay for a resume', async (t) => {
  const file = join(await tempDir(t), 'in');
  const content = randomBytes(3_000);
  const fetch = async function* (): AsyncGenerator<OffsetChunk> {
    yield { offset: 0, data: content.subarray(0, 1_000) };
    yield { offset: 2_000, data: content.subarray(2_000) };
  };
  await assert.rejects(downloadResumable({ file, fetch, outOfOrder }), /^Error: expected 1000, got 2000$/);
  assert.equal(Buffer.compare(await readFile(file), content.subarray(0, 1_000)), 0);
});

test('a file that cannot be written is reported before the call is opened', async (t) => {
  const file = join(await tempDir(t), 'no-such-dir', 'in');
  const s = sender(randomBytes(10));
  await assert.rejects(
    downloadResumable({ file, fetch: s.fetch, outOfOrder, cannotWrite: (err) => new Error(`cannot write: ${err.code}`) }),
    /^Error: cannot write: ENOENT$/,
  );
  assert.deepEqual(s.asked, []);
  await assert.rejects(downloadResumable({ file, fetch: s.fetch, outOfOrder }), { code: 'ENOENT' });
});

test('an error of the call ends the download with that error', async (t) => {
  const file = join(await tempDir(t), 'in');
  const fetch = async function* (): AsyncGenerator<OffsetChunk> {
    yield { offset: 0, data: Buffer.from('abc') };
    throw new Error('UNAVAILABLE');
  };
  await assert.rejects(downloadResumable({ file, fetch, outOfOrder }), /UNAVAILABLE/);
  assert.equal(await readFile(file, 'utf8'), 'abc');
});

/** A server-streaming call: a readable of `messages` that records cancel(). */
function fakeReadableCall<T>(messages: T[], endless = false): ClientReadableStream<T> & { cancelled: number } {
  let i = 0;
  const call = new Readable({
    objectMode: true,
    read() {
      if (i < messages.length) this.push(messages[i++]);
      else if (!endless) this.push(null);
    },
  }) as unknown as ClientReadableStream<T> & { cancelled: number };
  call.cancelled = 0;
  (call as unknown as { cancel(): void }).cancel = () => {
    call.cancelled++;
    call.destroy(Object.assign(new Error('Cancelled'), { code: 1 }));
  };
  return call;
}

test('callMessages yields the call\'s messages and cancels the call when the consumer stops early', async () => {
  const call = fakeReadableCall([1, 2, 3]);
  const seen: number[] = [];
  for await (const m of callMessages(call)) {
    seen.push(m);
    if (m === 2) break;
  }
  assert.deepEqual(seen, [1, 2]);
  assert.ok(call.cancelled >= 1);
});

test('callMessages cancels the call when the signal aborts', async () => {
  const call = fakeReadableCall([1], true);
  const ac = new AbortController();
  const seen: number[] = [];
  await assert.rejects(
    (async () => {
      for await (const m of callMessages(call, ac.signal)) {
        seen.push(m);
        ac.abort();
      }
    })(),
    /Cancelled/,
  );
  assert.deepEqual(seen, [1]);
  assert.ok(call.cancelled >= 1);
});

type Msg = { part: { $case: 'header'; value: string } | { $case: 'chunk'; value: Buffer } | { $case: 'trailer'; value: { size: number; sha256: string } } };

/** A client-streaming call that takes `highWaterMark` messages before it asks the writer to wait. */
function fakeWritableCall(opts: { highWaterMark?: number; failAfter?: number } = {}) {
  const received: Msg[] = [];
  let ended = false;
  const call = new Writable({
    objectMode: true,
    highWaterMark: opts.highWaterMark ?? 16,
    write(msg: Msg, _enc, cb) {
      received.push(msg);
      if (opts.failAfter !== undefined && received.length >= opts.failAfter) return cb(new Error('the receiver failed'));
      setImmediate(cb);
    },
    final(cb) {
      ended = true;
      cb();
    },
  });
  return { call: call as unknown as ClientWritableStream<Msg>, received, ended: () => ended };
}

const header: Msg = { part: { $case: 'header', value: 'h' } };
const trailer = (t: { size: number; sha256: string }): Msg => ({ part: { $case: 'trailer', value: t } });
const shrank = (pos: number) => new Error(`shrank to ${pos}`);
const chunksOf = (received: Msg[]) => received.flatMap((m) => (m.part.$case === 'chunk' ? [m.part.value] : []));

test('an upload without a body sends the header alone and ends the call', async () => {
  const c = fakeWritableCall();
  await sendWithTrailer(c.call, header);
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(c.received, [header]);
  assert.ok(c.ended());
});

test('an upload sends the header, the file in chunks and a trailer with the size and the sha256 it computed', async (t) => {
  const file = join(await tempDir(t), 'input.tar.gz');
  const content = randomBytes(2 * CHUNK_SIZE + 123);
  await writeFile(file, content);
  const c = fakeWritableCall({ highWaterMark: 1 });
  await sendWithTrailer(c.call, header, { file, trailer, shrank });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(c.received[0], header);
  assert.deepEqual(chunksOf(c.received).map((b) => b.length), [CHUNK_SIZE, CHUNK_SIZE, 123]);
  assert.equal(Buffer.compare(Buffer.concat(chunksOf(c.received)), content), 0);
  assert.deepEqual(c.received.at(-1), trailer({ size: content.length, sha256: sha(content) }));
  assert.ok(c.ended());
});

test('a resumed upload sends from the receiver\'s offset with the sha256 of the whole file, reporting progress', async (t) => {
  const file = join(await tempDir(t), 'result.tar.gz');
  const content = randomBytes(CHUNK_SIZE + 5_000);
  await writeFile(file, content);
  const c = fakeWritableCall();
  const progress: number[] = [];
  await sendWithTrailer(c.call, header, {
    file, from: 5_000, size: content.length, sha256: sha(content), trailer, shrank, onProgress: (sent, total) => progress.push(sent, total),
  });
  await new Promise((r) => setImmediate(r));
  assert.equal(Buffer.compare(Buffer.concat(chunksOf(c.received)), content.subarray(5_000)), 0);
  assert.deepEqual(c.received.at(-1), trailer({ size: content.length, sha256: sha(content) }));
  assert.deepEqual(progress, [5_000 + CHUNK_SIZE, content.length]);
  // Nothing left to send: header and trailer only.
  const done = fakeWritableCall();
  await sendWithTrailer(done.call, header, { file, from: content.length, size: content.length, sha256: sha(content), trailer, shrank });
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(done.received, [header, trailer({ size: content.length, sha256: sha(content) })]);
  await assert.rejects(sendWithTrailer(fakeWritableCall().call, header, { file, from: 1, trailer, shrank }), /needs the sha256/);
});

test('a file shorter than the size announced, an abort, or a failing call stop the upload', async (t) => {
  const file = join(await tempDir(t), 'result');
  await writeFile(file, randomBytes(1_000));
  await assert.rejects(sendWithTrailer(fakeWritableCall().call, header, { file, size: 2_000, sha256: 'x', trailer, shrank }), /^Error: shrank to 1000$/);
  const ac = new AbortController();
  ac.abort(new Error('stop'));
  await assert.rejects(sendWithTrailer(fakeWritableCall().call, header, { file, trailer, shrank, signal: ac.signal }), /stop/);

  const big = join(await tempDir(t), 'big');
  await writeFile(big, randomBytes(8 * CHUNK_SIZE));
  const failing = fakeWritableCall({ highWaterMark: 1, failAfter: 2 });
  failing.call.on('error', () => undefined);
  await assert.rejects(sendWithTrailer(failing.call, header, { file: big, trailer, shrank }), /the receiver failed/);
  assert.ok(failing.received.length < 10, 'the file is not read to its end for a call that failed');
});

