// The node's reports as SendReport calls (worker/report-calls.ts), against a fake transport: one
// call at a time with only the newest waiting report next, the Report stream once the master says
// UNIMPLEMENTED, and the first failure told once.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import { ResourceReport } from '../../src/protocol/gen/hivemind/v1/common.js';
import { ReportCalls, type ReportTransport } from '../../src/worker/report-calls.js';

class FakeTransport implements ReportTransport {
  calls: { seq: number; done: (err: Error | undefined) => void }[] = [];
  streamed: number[] = [];
  streamOnError: ((err: Error) => void) | undefined;
  streamClosed = false;
  unimplemented = 0;
  sendOne(report: ResourceReport, done: (err: Error | undefined) => void): void {
    this.calls.push({ seq: report.seq, done });
  }
  openStream(onError: (err: Error) => void) {
    this.streamOnError = onError;
    return { send: (r: ResourceReport) => void this.streamed.push(r.seq), close: () => void (this.streamClosed = true) };
  }
  onUnimplemented(): void {
    this.unimplemented++;
  }
}

const r = (seq: number) => ResourceReport.fromPartial({ seq });
const grpcError = (code: number) => Object.assign(new Error(`code ${code}`), { code });

test('one call at a time; of the reports that came meanwhile only the newest goes next', () => {
  const t = new FakeTransport();
  const sink = new ReportCalls(t, () => assert.fail('no error expected'));
  sink.send(r(1));
  sink.send(r(2));
  sink.send(r(3));
  assert.deepEqual(t.calls.map((c) => c.seq), [1]);
  t.calls[0]!.done(undefined);
  assert.deepEqual(t.calls.map((c) => c.seq), [1, 3]);
  t.calls[1]!.done(undefined);
  sink.send(r(4));
  assert.deepEqual(t.calls.map((c) => c.seq), [1, 3, 4]);
});

test('UNIMPLEMENTED (an older master): the report goes on the stream, and so do the later ones', () => {
  const t = new FakeTransport();
  const sink = new ReportCalls(t, () => assert.fail('no error expected'));
  sink.send(r(1));
  sink.send(r(2));
  t.calls[0]!.done(grpcError(status.UNIMPLEMENTED));
  assert.equal(t.unimplemented, 1);
  assert.deepEqual(t.streamed, [2], 'the newest report, not the refused one and then it');
  sink.send(r(3));
  assert.deepEqual(t.streamed, [2, 3]);
  assert.equal(t.calls.length, 1, 'no more calls');
  sink.close();
  assert.equal(t.streamClosed, true);
});

test('a failed call is told once and ends the sink; nothing is sent after', () => {
  const t = new FakeTransport();
  const errors: Error[] = [];
  const sink = new ReportCalls(t, (e) => errors.push(e));
  sink.send(r(1));
  sink.send(r(2));
  t.calls[0]!.done(grpcError(status.RESOURCE_EXHAUSTED));
  sink.send(r(3));
  assert.equal(errors.length, 1);
  assert.match(errors[0]!.message, /code 8/);
  assert.deepEqual(t.calls.map((c) => c.seq), [1]);
});

test('after close a call that ends (even failed) tells nothing and sends nothing', () => {
  const t = new FakeTransport();
  const sink = new ReportCalls(t, () => assert.fail('no error after close'));
  sink.send(r(1));
  sink.send(r(2));
  sink.close();
  t.calls[0]!.done(grpcError(status.UNAVAILABLE));
  assert.deepEqual(t.calls.map((c) => c.seq), [1]);
});
