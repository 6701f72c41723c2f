// GrpcMasterConnection against a real in-process gRPC server on loopback: bearer metadata,
// resumable input download, upload resumed from the master's offset, streams and commands.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Server, ServerCredentials, status, type Metadata } from '@grpc/grpc-js';
import { NodeServiceService, type ExecNodeMessage, type NodeServiceServer, type NodeCommand, type UploadResultRequest } from '../../src/protocol/gen/hivemind/v1/node.js';
import { ResourceReport, type ExecInput, type LogChunk } from '../../src/protocol/gen/hivemind/v1/common.js';
import { readBearer } from '../../src/protocol/auth-metadata.js';
import { CHUNK_SIZE } from '../../src/protocol/transport.js';
import { GrpcMasterConnection } from '../../src/worker/grpc-master-connection.js';
import { InputChecksumError } from '../../src/worker/master-connection.js';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

interface ServerState {
  input: Buffer;
  downloadOffsets: number[];
  stored: Buffer;
  uploadHeaders: number[];
  bearers: string[];
  logs: LogChunk[];
  commands: NodeCommand[];
  exec: ExecNodeMessage[];
  /** Reports received, and how: a SendReport call or the Report stream. */
  reports: { via: 'call' | 'stream'; seq: number }[];
  sendReportCalls: number;
}

/** `olderMaster`: SendReport answers UNIMPLEMENTED, as a master from before it does. */
async function startServer(t: { after(fn: () => unknown): void }, opts: { olderMaster?: boolean } = {}): Promise<{ address: string; state: ServerState }> {
  const state: ServerState = { input: randomBytes(3 * CHUNK_SIZE + 123), downloadOffsets: [], stored: Buffer.alloc(0), uploadHeaders: [], bearers: [], logs: [], commands: [], exec: [], reports: [], sendReportCalls: 0 };
  const auth = (md: Metadata) => {
    const b = readBearer(md) ?? '';
    state.bearers.push(b);
    return b === 'enroll' || b === 'cred';
  };
  const impl: NodeServiceServer = {
    register: (call, cb) => {
      if (!auth(call.metadata)) return cb({ code: status.UNAUTHENTICATED, details: 'bad token' });
      cb(null, { nodeId: 'n1', nodeCredential: 'cred', reportIntervalMs: 1000, masterVersion: 't' });
    },
    report: (call, cb) => {
      call.on('data', (r: { seq: number }) => state.reports.push({ via: 'stream', seq: r.seq }));
      call.on('end', () => cb(null, { lastSeq: 0, dropData: [] }));
    },
    sendReport: (call, cb) => {
      state.sendReportCalls++;
      if (opts.olderMaster) return cb({ code: status.UNIMPLEMENTED, details: 'The server does not implement the method SendReport' });
      if (!auth(call.metadata)) return cb({ code: status.UNAUTHENTICATED, details: 'bad' });
      state.reports.push({ via: 'call', seq: call.request.seq });
      cb(null, { lastSeq: call.request.seq, dropData: [] });
    },
    subscribe: (call) => {
      if (!auth(call.metadata)) return call.destroy(Object.assign(new Error('bad'), { code: status.UNAUTHENTICATED }));
      for (const c of state.commands) call.write(c);
      call.end();
    },
    updateTask: (call, cb) => {
      if (!auth(call.metadata)) return cb({ code: status.UNAUTHENTICATED, details: 'bad' });
      cb(null, { applied: true, superseded: false, cancelRequested: call.request.seq === 9 });
    },
    downloadInput: (call) => {
      auth(call.metadata);
      state.downloadOffsets.push(call.request.offset);
      for (let off = call.request.offset; off < state.input.length; off += CHUNK_SIZE) {
        call.write({ offset: off, data: state.input.subarray(off, off + CHUNK_SIZE) });
      }
      call.end();
    },
    // the node's data downloads are tested where the worker fetches data sets
    downloadData: (call) => call.emit('error', { code: status.UNIMPLEMENTED, details: 'not in this fake' }),
    getUploadOffset: (call, cb) => {
      auth(call.metadata);
      cb(null, { offset: state.stored.length, complete: false, sha256: '' });
    },
    uploadResult: (call, cb) => {
      auth(call.metadata);
      let size = 0;
      let digest = '';
      call.on('data', (m: UploadResultRequest) => {
        const p = m.part;
        if (p?.$case === 'header') state.uploadHeaders.push(p.value.offset);
        else if (p?.$case === 'chunk') state.stored = Buffer.concat([state.stored, p.value]);
        else if (p?.$case === 'trailer') ({ size, sha256: digest } = p.value);
      });
      call.on('end', () => {
        if (sha(state.stored) !== digest || state.stored.length !== size) return cb({ code: status.DATA_LOSS, details: 'checksum mismatch' });
        cb(null, { size, sha256: digest });
      });
    },
    // A scripted master: after the attach it sends stdin and its end, and ends once the exit came;
    // a session id of zeros is cut at once (the client went away).
    execSession: (call) => {
      call.on('data', (m: ExecNodeMessage) => {
        state.exec.push(m);
        if (m.message?.$case === 'attach') {
          if (/^0+$/.test(m.message.value.sessionId)) return void call.emit('error', { code: status.CANCELLED, details: 'client gone' });
          call.write({ input: { $case: 'stdin', value: Buffer.from('hi') } });
          call.write({ input: { $case: 'stdinEof', value: true } });
        }
        if (m.message?.$case === 'output' && m.message.value.output?.$case === 'exit') call.end();
      });
    },
    pushLogs: (call, cb) => {
      call.on('data', (c: LogChunk) => state.logs.push(c));
      call.on('end', () => cb(null, { chunks: state.logs.length }));
    },
    // An older master: the node must not resend to it.
    getLogOffset: (_call, cb) => cb({ code: status.UNIMPLEMENTED, details: 'GetLogOffset is not implemented' }),
  };
  const server = new Server();
  server.addService(NodeServiceService, impl);
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
  );
  t.after(() => new Promise<void>((r) => server.tryShutdown(() => r())));
  return { address: `127.0.0.1:${port}`, state };
}

async function tmp(t: { after(fn: () => unknown): void }): Promise<string> {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'hm-grpc-conn-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

test('register switches to the node credential; unary calls and commands flow', async (t) => {
  const { address, state } = await startServer(t);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await assert.rejects(conn.updateTask({ taskId: 'x', attempt: 1, seq: 1, state: 3, message: '', atMs: 1, accepting: true }), /not registered yet/);
  const res = await conn.register({ name: 'w', facts: undefined }, 'enroll');
  assert.equal(res.nodeId, 'n1');
  const ack = await conn.updateTask({ taskId: 'x', attempt: 1, seq: 9, state: 3, message: '', atMs: 1, accepting: true });
  assert.equal(ack.cancelRequested, true);
  assert.deepEqual(state.bearers, ['enroll', 'cred']);

  state.commands = [{ command: { $case: 'ping', value: { atMs: 5 } } }];
  const got: NodeCommand[] = [];
  const sub = conn.subscribe({ running: [], free: undefined, accepting: true, exec: false }, (c) => got.push(c));
  assert.equal(await sub.closed, undefined, 'a clean end of the command stream');
  assert.deepEqual(got, state.commands);

  const logs = conn.pushLogs('x', 1);
  assert.equal(logs.ready, true);
  logs.write({ taskId: 'x', attempt: 1, stream: 1, data: Buffer.from('hi'), atMs: 1 });
  await logs.end();
  assert.equal(Buffer.from(state.logs[0]!.data).toString(), 'hi');
});

const report = (seq: number): ResourceReport => ResourceReport.fromPartial({ seq, atMs: seq });

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** A registered connection to a fake master and its report sink, the errors it reported. */
async function reporting(t: { after(fn: () => unknown): void }, opts: { olderMaster?: boolean } = {}) {
  const { address, state } = await startServer(t, opts);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await conn.register({ name: 'w', facts: undefined }, 'enroll');
  const errors: Error[] = [];
  return { state, conn, errors, sink: conn.openReportStream((e) => errors.push(e)) };
}

test('reports go as SendReport calls, one at a time, the newest waiting one next (a refused one: test/unit/report-calls)', async (t) => {
  const { state, sink, errors } = await reporting(t);
  sink.send(report(1));
  sink.send(report(2)); // waits behind 1…
  sink.send(report(3)); // …and is replaced by 3
  await until('two reports', () => state.reports.length === 2);
  assert.deepEqual(state.reports, [{ via: 'call', seq: 1 }, { via: 'call', seq: 3 }]);
  sink.close();
  assert.deepEqual(errors, []);
});

test('an older master without SendReport: the node falls back to the Report stream once and keeps to it', async (t) => {
  const { state, conn, sink, errors } = await reporting(t, { olderMaster: true });
  sink.send(report(1));
  await until('the first report on the stream', () => state.reports.length === 1);
  sink.send(report(2));
  await until('the second report', () => state.reports.length === 2);
  sink.close();
  // A later session on the same connection goes straight to the stream.
  const again = conn.openReportStream((e) => errors.push(e));
  again.send(report(3));
  await until('the third report', () => state.reports.length === 3);
  again.close();
  assert.deepEqual(state.reports, [{ via: 'stream', seq: 1 }, { via: 'stream', seq: 2 }, { via: 'stream', seq: 3 }]);
  assert.equal(state.sendReportCalls, 1, 'SendReport was tried once');
  assert.deepEqual(errors, []);
});

test('a wrong token is refused with UNAUTHENTICATED', async (t) => {
  const { address } = await startServer(t);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await assert.rejects(conn.register({ name: 'w', facts: undefined }, 'nope'), (err: { code?: number }) => err.code === status.UNAUTHENTICATED);
});

test('input download resumes from the partial file and verifies the whole sha256', async (t) => {
  const { address, state } = await startServer(t);
  const dir = await tmp(t);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await conn.register({ name: 'w', facts: undefined }, 'cred');
  const dest = path.join(dir, 'in.tar.gz');
  const partial = CHUNK_SIZE + 17;
  await writeFile(dest, state.input.subarray(0, partial));
  const size = await conn.downloadInput('t', 1, dest, sha(state.input), new AbortController().signal);
  assert.equal(size, state.input.length);
  assert.deepEqual(state.downloadOffsets, [partial]);
  assert.ok((await readFile(dest)).equals(state.input));

  // A corrupt partial file is caught by the checksum.
  const bad = path.join(dir, 'bad.tar.gz');
  await writeFile(bad, Buffer.alloc(10, 0xff));
  await assert.rejects(conn.downloadInput('t', 1, bad, sha(state.input), new AbortController().signal), InputChecksumError);
});

test('result upload asks for the offset first and sends only the rest', async (t) => {
  const { address, state } = await startServer(t);
  const dir = await tmp(t);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await conn.register({ name: 'w', facts: undefined }, 'cred');
  const result = randomBytes(2 * CHUNK_SIZE + 999);
  const file = path.join(dir, 'result.tar.gz');
  await writeFile(file, result);
  state.stored = result.subarray(0, 1000); // the master kept part of an earlier attempt
  const res = await conn.uploadResult('t', 1, file, sha(result), new AbortController().signal);
  assert.deepEqual(res, { size: result.length, sha256: sha(result) });
  assert.deepEqual(state.uploadHeaders, [1000]);
  assert.ok(state.stored.equals(result));

  const aborted = new AbortController();
  aborted.abort('cancelled');
  await assert.rejects(conn.uploadResult('t', 1, file, sha(result), aborted.signal));
});

test('an exec session stream: attach, the master\'s input, the exit, a clean end; a cut stream ends with its error', async (t) => {
  const { address, state } = await startServer(t);
  const conn = new GrpcMasterConnection(address);
  t.after(() => conn.close());
  await conn.register({ name: 'w', facts: undefined }, 'cred');
  const ch = conn.execSession();
  const inputs: ExecInput[] = [];
  const ended = new Promise<Error | undefined>((resolve) => ch.listen((i) => {
    inputs.push(i);
    if (i.input?.$case === 'stdinEof') ch.write({ message: { $case: 'output', value: { output: { $case: 'exit', value: { code: 0, error: '' } } } } });
  }, resolve));
  ch.write({ message: { $case: 'attach', value: { sessionId: 'f'.repeat(32) } } });
  assert.equal(await ended, undefined, 'the master ended the stream cleanly');
  ch.end();
  assert.deepEqual(inputs.map((i) => i.input?.$case), ['stdin', 'stdinEof']);
  assert.deepEqual(state.exec.map((m) => m.message?.$case), ['attach', 'output']);

  const cut = conn.execSession();
  const cutEnd = new Promise<Error | undefined>((resolve) => cut.listen(() => undefined, resolve));
  cut.write({ message: { $case: 'attach', value: { sessionId: '0'.repeat(32) } } });
  const err = await cutEnd;
  assert.ok(err, 'a cut stream ends with an error');
});
