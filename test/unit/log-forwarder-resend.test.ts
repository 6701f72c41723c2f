// The worker's side of "nothing lost when a master dies": a fake master that keeps offsets like
// the real one (drops what it holds of a chunk), streams that die with chunks written but not
// stored, and the forwarder resending to the next one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogStream, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';
import { systemClock } from '../../src/common/clock.js';
import { LogForwarder, unheldEntries } from '../../src/worker/log-forwarder.js';
import type { LogHeld, LogSink } from '../../src/worker/master-connection.js';

/** What a master stored of one attempt, per stream, dropping the part of a chunk it already holds. */
class FakeMasterLog {
  readonly data = { stdout: '', stderr: '' };
  readonly plain: string[] = [];
  /** Gaps seen (the real master notes them in the log); filled with '?' here to keep offsets. */
  readonly gaps: [string, number][] = [];
  store(c: LogChunk): void {
    if (c.offset === undefined) {
      this.plain.push(c.data.toString());
      return;
    }
    const s = c.stream === LogStream.LOG_STREAM_STDOUT ? 'stdout' : 'stderr';
    const held = this.data[s].length;
    if (c.offset > held) {
      this.gaps.push([s, c.offset - held]);
      this.data[s] += '?'.repeat(c.offset - held);
    }
    this.data[s] += c.data.toString().slice(held - c.offset);
  }
  held(): LogHeld {
    return { stdout: this.data.stdout.length, stderr: this.data.stderr.length };
  }
}

/** A stream to `master`; `lose` makes it keep chunks "in the socket" instead of storing them. */
class FakeSink implements LogSink {
  written: LogChunk[] = [];
  ready = true;
  broken = false;
  lose = false;
  ended = false;
  constructor(private readonly master: FakeMasterLog | undefined, private readonly answer: 'offsets' | 'older' | 'fails' = 'offsets') {}
  write(c: LogChunk): boolean {
    if (this.broken) return false;
    this.written.push(c);
    if (!this.lose) this.master?.store(c);
    return true;
  }
  async end(): Promise<void> {
    this.ended = true;
  }
  /** The master dies: what was "in the socket" is gone. */
  die(): void {
    this.broken = true;
  }
  held = async (): Promise<LogHeld | undefined> => {
    if (this.answer === 'fails') throw new Error('UNAVAILABLE');
    return this.answer === 'older' ? undefined : this.master!.held();
  };
}

const settle = () => new Promise((r) => setImmediate(r));

function forwarder(sinks: (FakeSink | undefined)[], maxBufferedBytes = 1 << 20) {
  const opened: FakeSink[] = [];
  const f = new LogForwarder({
    taskId: 't', attempt: 1, clock: systemClock, flushMs: 1_000_000, maxBufferedBytes, closeTimeoutMs: 2_000,
    openSink: () => {
      const s = sinks.shift();
      if (s) opened.push(s);
      return s;
    },
  });
  return { f, opened };
}

test('a stream that dies with chunks written but not stored: the next master gets them, each byte once', async () => {
  const a = new FakeMasterLog();
  const sinkA = new FakeSink(a);
  const b = a; // one data dir: B reads what A stored
  const sinkB = new FakeSink(b);
  const { f } = forwarder([sinkA, sinkB]);
  f.push('stdout', Buffer.from('out 1\n'));
  f.push('stderr', Buffer.from('err 1\n'));
  f.flush();
  await settle();
  assert.deepEqual(a.data, { stdout: 'out 1\n', stderr: 'err 1\n' });
  sinkA.lose = true;
  f.push('stdout', Buffer.from('out 2\n'));
  f.push('stderr', Buffer.from('err 2\n'));
  f.flush();
  assert.equal(sinkA.written.length, 4, 'written into the socket of a master about to die');
  sinkA.die();
  f.push('stdout', Buffer.from('out 3\n'));
  f.flush(); // the broken stream is replaced; B is asked what it holds
  await settle();
  await f.close();
  assert.deepEqual(b.data, { stdout: 'out 1\nout 2\nout 3\n', stderr: 'err 1\nerr 2\n' });
  assert.deepEqual(sinkB.written.map((c) => [c.offset, c.data.toString()]), [[6, 'out 2\n'], [6, 'err 2\n'], [12, 'out 3\n']], 'only what B lacked');
  assert.ok(sinkB.ended);
  assert.equal(f.droppedBytes, 0);
  assert.deepEqual(a.gaps, []);
});

test('a quiet task: a stream that dies after the last line is replaced at the next tick, not only at the next push', async () => {
  const m = new FakeMasterLog();
  const first = new FakeSink(m);
  const second = new FakeSink(m);
  const f = new LogForwarder({ taskId: 't', attempt: 1, clock: systemClock, flushMs: 5, maxBufferedBytes: 1 << 20, openSink: () => (first.broken ? second : first) });
  first.lose = true;
  f.push('stdout', Buffer.from('last line\n'));
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(m.data.stdout, '');
  first.die();
  await new Promise((r) => setTimeout(r, 40));
  assert.equal(m.data.stdout, 'last line\n');
  await f.close();
});

test('what the next master holds is not resent, a chunk it holds in part is resent from the first byte it lacks', () => {
  const chunk = (s: string): LogChunk => ({ taskId: 't', attempt: 1, stream: LogStream.LOG_STREAM_STDOUT, data: Buffer.from(s), atMs: 0 });
  const entries = [
    { stream: 'stdout' as const, offset: 0, chunk: chunk('abc') },
    { stream: 'stdout' as const, offset: 3, chunk: chunk('defg') },
    { stream: 'stderr' as const, offset: 0, chunk: chunk('xy') },
  ];
  const left = unheldEntries(entries, { stdout: 5, stderr: 0 });
  assert.deepEqual(left.map((e) => [e.stream, e.offset, e.chunk.data.toString()]), [['stdout', 5, 'fg'], ['stderr', 0, 'xy']]);
  assert.deepEqual(unheldEntries(entries, { stdout: 7, stderr: 2 }), []);
});

test('an older master (no GetLogOffset): chunks go without offsets and a written one is never resent', async () => {
  const m = new FakeMasterLog();
  const s1 = new FakeSink(m, 'older');
  const s2 = new FakeSink(m, 'older');
  const { f } = forwarder([s1, s2]);
  f.push('stdout', Buffer.from('a\n'));
  f.flush();
  await settle();
  s1.die();
  f.push('stdout', Buffer.from('b\n'));
  f.flush();
  await settle();
  await f.close();
  assert.deepEqual(m.plain, ['a\n', 'b\n']);
  assert.ok([...s1.written, ...s2.written].every((c) => c.offset === undefined));
});

test('a master that cannot say what it holds: its stream is dropped and the next one is asked', async () => {
  const m = new FakeMasterLog();
  const failing = new FakeSink(m, 'fails');
  const good = new FakeSink(m);
  const { f } = forwarder([failing, good]);
  f.push('stdout', Buffer.from('x\n'));
  f.flush();
  await settle();
  assert.deepEqual(failing.written, [], 'nothing written before the master answered');
  assert.ok(failing.ended);
  f.flush();
  await settle();
  assert.equal(m.data.stdout, 'x\n');
  await f.close();
});

test('a worker that reattached picks the log up where the master holds it, not at offset 0', async () => {
  const m = new FakeMasterLog();
  m.data.stdout = 'before the restart\n';
  const sink = new FakeSink(m);
  const { f } = forwarder([sink]);
  f.push('stdout', Buffer.from('after\n'));
  f.flush();
  await settle();
  await f.close();
  assert.equal(sink.written[0]!.offset, 'before the restart\n'.length);
  assert.equal(m.data.stdout, 'before the restart\nafter\n');
});

test('the byte bound holds with unconfirmed chunks kept: written ones go first, unsent ones dropped are counted', async () => {
  const m = new FakeMasterLog();
  const sink = new FakeSink(m);
  const { f } = forwarder([sink], 8);
  f.push('stdout', Buffer.from('1234'));
  f.flush();
  await settle();
  f.flush();
  assert.equal(m.data.stdout, '1234');
  sink.ready = false;
  f.push('stdout', Buffer.from('5678'));
  f.push('stdout', Buffer.from('9abc')); // over 8: the written '1234' goes, nothing counted
  assert.equal(f.droppedBytes, 0);
  f.push('stdout', Buffer.from('defg')); // the unsent '5678' goes: counted
  assert.equal(f.droppedBytes, 4);
  sink.ready = true;
  await f.close();
  assert.deepEqual(sink.written.map((c) => [c.offset, c.data.toString()]), [[0, '1234'], [8, '9abc'], [12, 'defg']], 'the gap is the master\'s to note, from the offsets');
  assert.deepEqual(m.gaps, [['stdout', 4]]);
  assert.equal(m.data.stdout, '1234????9abcdefg');
});

test('close(): when the master dies before acknowledging the end, the next one gets what it lacks, then the end', async () => {
  const m = new FakeMasterLog();
  const dying = new FakeSink(m);
  dying.lose = true;
  dying.end = async () => {
    dying.ended = true;
    dying.broken = true; // the ack never came
  };
  const next = new FakeSink(m);
  const { f } = forwarder([dying, next]);
  f.push('stderr', Buffer.from('the end\n'));
  f.flush();
  await settle();
  await f.close();
  assert.equal(m.data.stderr, 'the end\n');
  assert.ok(next.ended);
});
