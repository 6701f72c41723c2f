// Docker's multiplexed, timestamped log stream split into messages; the live-log watermark a
// reattaching worker resumes from.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogFrameDecoder, parseDockerTime, type LogMessage } from '../../src/runtime/log-frames.js';
import { LogForwarder } from '../../src/worker/log-forwarder.js';
import type { LogSink } from '../../src/worker/master-connection.js';
import { LogStream, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';
import { systemClock } from '../../src/common/clock.js';

function frame(stream: 0 | 1 | 2, payload: string): Buffer {
  const body = Buffer.from(payload);
  const head = Buffer.alloc(8);
  head[0] = stream;
  head.writeUInt32BE(body.length, 4);
  return Buffer.concat([head, body]);
}

test('Docker times parse to ns, with or without a fraction, and junk is refused', () => {
  assert.equal(parseDockerTime('2026-12-03T11:20:32.123456789Z'), 1796296832123456789n);
  assert.equal(parseDockerTime('2026-12-03T11:20:32.5Z'), 1796296832500000000n, 'Docker trims trailing zeros');
  assert.equal(parseDockerTime('2026-12-03T11:20:32Z'), 1796296832000000000n);
  assert.equal(parseDockerTime('2026-12-03T12:20:32.1+01:00'), 1796296832100000000n);
  for (const bad of ['', 'hello', '2026-12-03 11:20:32Z', '2026-13-45T99:99:99Z', '2026-12-03T11:20:32.1234567891Z']) assert.equal(parseDockerTime(bad), undefined, bad);
});

test('frames split anywhere across chunks come out whole, in order, with their stream and time', () => {
  const bytes = Buffer.concat([
    frame(1, '2026-12-03T11:20:32.000000001Z one\n'),
    frame(2, '2026-12-03T11:20:32.000000002Z oops\n'),
    frame(1, '2026-12-03T11:20:33Z two words\n'),
  ]);
  for (const step of [1, 3, 7, 8, 9, bytes.length]) {
    const got: LogMessage[] = [];
    const d = new LogFrameDecoder((m) => got.push(m));
    for (let i = 0; i < bytes.length; i += step) d.push(bytes.subarray(i, i + step));
    assert.deepEqual(got.map((m) => [m.stream, m.data.toString(), m.atNs]), [
      ['stdout', 'one\n', 1796296832000000001n],
      ['stderr', 'oops\n', 1796296832000000002n],
      ['stdout', 'two words\n', 1796296833000000000n],
    ], `chunks of ${step} bytes`);
  }
});

test('a frame without a readable time keeps the payload whole and the last time seen', () => {
  const got: LogMessage[] = [];
  const d = new LogFrameDecoder((m) => got.push(m));
  d.push(Buffer.concat([frame(1, '2026-12-03T11:20:32Z a\n'), frame(1, 'no time here\n'), frame(0, 'stdin?'), frame(1, '')]));
  assert.deepEqual(got.map((m) => [m.data.toString(), m.atNs]), [['a\n', 1796296832000000000n], ['no time here\n', 1796296832000000000n]]);
});

class RecordingSink implements LogSink {
  written: LogChunk[] = [];
  ready = true;
  broken = false;
  write(chunk: LogChunk): boolean {
    this.written.push(chunk);
    return true;
  }
  async end(): Promise<void> {}
}

test('the forwarder reports the time of the last chunk it handed to the master, and only then', async () => {
  const sink = new RecordingSink();
  let open = false;
  const sent: bigint[] = [];
  const f = new LogForwarder({ taskId: 't', attempt: 1, clock: systemClock, flushMs: 1_000_000, maxBufferedBytes: 1024, openSink: () => (open ? sink : undefined), onSent: (ns) => sent.push(ns) });
  f.push('stdout', Buffer.from('a'), 10n);
  f.push('stdout', Buffer.from('b'), 20n);
  f.flush();
  assert.deepEqual(sent, [], 'nothing sent while the master is away');
  open = true;
  f.flush();
  assert.deepEqual(sent, [20n]);
  sink.ready = false;
  f.push('stderr', Buffer.from('c'), 30n);
  f.flush();
  assert.deepEqual(sent, [20n], 'a backpressured stream took nothing');
  sink.ready = true;
  await f.close();
  assert.deepEqual(sent, [20n, 30n]);
  assert.deepEqual(sink.written.map((c) => c.data.toString()), ['a', 'b', 'c']);
});

test('chunks dropped from a full buffer take their times with them', async () => {
  const sink = new RecordingSink();
  const sent: bigint[] = [];
  const f = new LogForwarder({ taskId: 't', attempt: 1, clock: systemClock, flushMs: 1_000_000, maxBufferedBytes: 2, openSink: () => sink, onSent: (ns) => sent.push(ns) });
  sink.ready = false;
  for (const [i, ch] of ['a', 'b', 'c', 'd'].entries()) f.push('stdout', Buffer.from(ch), BigInt(i + 1));
  sink.ready = true;
  f.flush();
  assert.deepEqual(sink.written.map((c) => c.data.toString()), ['\n[hivemind: 2 bytes of output skipped here: the master did not take them fast enough]\n', 'c', 'd']);
  assert.equal(sink.written[0]!.stream, LogStream.LOG_STREAM_STDERR, 'the note goes to stderr, where the skip was');
  assert.deepEqual(sent, [4n]);
  assert.equal(f.droppedBytes, 2);
  await f.close(); // its flush timer (1,000 s) would keep this test file's process alive
});

/** A stream that takes one chunk, then needs a drain that comes `drainMs` later. */
class SlowSink extends RecordingSink {
  constructor(private readonly drainMs: number) {
    super();
  }
  override write(chunk: LogChunk): boolean {
    super.write(chunk);
    this.ready = false;
    setTimeout(() => (this.ready = true), this.drainMs);
    return true;
  }
}

test('when the task ends, close() waits for a backpressured stream until the end of the output is sent', async () => {
  const sink = new SlowSink(5);
  const f = new LogForwarder({ taskId: 't', attempt: 1, clock: systemClock, flushMs: 1_000_000, maxBufferedBytes: 1024, openSink: () => sink });
  for (let i = 0; i < 20; i++) f.push('stdout', Buffer.from(`line ${i}\n`));
  f.push('stdout', Buffer.from('THE-END\n'));
  await f.close();
  assert.equal(sink.written.map((c) => c.data.toString()).join(''), Array.from({ length: 20 }, (_, i) => `line ${i}\n`).join('') + 'THE-END\n');
  assert.equal(f.droppedBytes, 0);
});

test('close() gives up on a stream that stays backpressured after its timeout, and counts what it dropped', async () => {
  const sink = new RecordingSink();
  const f = new LogForwarder({ taskId: 't', attempt: 1, clock: systemClock, flushMs: 1_000_000, maxBufferedBytes: 1024, openSink: () => sink, closeTimeoutMs: 50 });
  sink.ready = false;
  f.push('stdout', Buffer.from('never sent'));
  const started = Date.now();
  await f.close();
  assert.ok(Date.now() - started >= 50 && Date.now() - started < 2_000);
  assert.deepEqual(sink.written, []);
  assert.equal(f.droppedBytes, 10);
});
