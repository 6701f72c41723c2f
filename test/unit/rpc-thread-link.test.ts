// The main thread's end of an RPC thread (master/rpc/rpc-thread-link.ts) against a scripted
// thread: a Worker that sends the frames a test gives it, so the order and the pacing in which the
// main thread handles them can be seen without grpc-js or sockets.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Worker } from 'node:worker_threads';
import { Metadata } from '@grpc/grpc-js';
import { BridgedCall } from '../../src/master/rpc/bridged-call.js';
import type { FromThread, RpcThreadData } from '../../src/master/rpc/rpc-frames.js';
import { RpcThreadLink, type OpenFrame } from '../../src/master/rpc/rpc-thread-link.js';

const DATA: RpcThreadData = { index: 0, host: '127.0.0.1', port: 0, reusePort: false, methods: [], maxReceiveBytes: 1024, readAhead: 4, maxOpenCalls: 100 };

/** A thread that says it listens, then sends `frames` as one batch; it answers 'close' with 'closed'. */
function scripted(frames: FromThread[]): () => Worker {
  return () => new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    parentPort.postMessage([{ t: 'listening', port: 4242 }]);
    setTimeout(() => parentPort.postMessage(workerData.frames), 20);
    parentPort.on('message', (batch) => { if (batch.some((f) => f.t === 'close')) parentPort.postMessage([{ t: 'closed' }]); });
  `, { eval: true, workerData: { frames } });
}

const open = (id: number, path: string): OpenFrame => ({ t: 'open', id, path, metadata: {}, peer: 'ipv4:127.0.0.1:1', host: 'h', deadline: Infinity, connection: {} });

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

test('frames of urgent calls (an operator\'s) are handled before the nodes\' frames that came in the same batch', async (t) => {
  const frames = [open(1, '/n.Node/Report'), open(2, '/n.Node/Report'), open(3, '/a.Admin/ListNodes'), open(4, '/n.Node/Report'), open(5, '/a.Admin/ListTasks')];
  const opened: number[] = [];
  const { link, port } = await RpcThreadLink.start(DATA, scripted(frames), (_l, f) => void opened.push(f.id), () => undefined, (path) => path.startsWith('/a.Admin/'));
  t.after(() => link.close(0));
  assert.equal(port, 4242);
  await until('five calls opened', () => opened.length === 5);
  assert.deepEqual(opened, [3, 5, 1, 2, 4]);
});

test('a burst of frames is handled in slices: the loop turns (timers run) before the burst is through', async (t) => {
  const frames = Array.from({ length: 60 }, (_, i) => open(i + 1, '/n.Node/Report'));
  let opened = 0;
  let openedAtFirstTick: number | undefined;
  // Each call costs 2 ms of main-thread work: 120 ms in all, against 10 ms slices.
  const busy = () => {
    const end = performance.now() + 2;
    while (performance.now() < end);
  };
  const { link } = await RpcThreadLink.start(DATA, scripted(frames), () => {
    if (opened++ === 0) setTimeout(() => (openedAtFirstTick = opened), 0);
    busy();
  }, () => undefined);
  t.after(() => link.close(0));
  await until('every call opened', () => opened === 60);
  assert.ok(openedAtFirstTick !== undefined && openedAtFirstTick < 20, `a timer set at the first frame ran after ${openedAtFirstTick} of 60 frames: the burst was not sliced`);
});

test('the thread\'s lag answer is taken as it arrives, not behind a backlog of calls\' frames', async (t) => {
  // 200 calls of 5 ms each: a second of main-thread work queued before the answer.
  const frames: FromThread[] = [...Array.from({ length: 200 }, (_, i) => open(i + 1, '/n.Node/Report')), { t: 'lag', token: 1, p50: 0.001, p99: 0.002, max: 0.003 }];
  let opened = 0;
  const { link } = await RpcThreadLink.start(DATA, () => new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    parentPort.postMessage([{ t: 'listening', port: 1 }]);
    parentPort.on('message', (batch) => {
      if (batch.some((f) => f.t === 'lag')) parentPort.postMessage(workerData.frames);
      if (batch.some((f) => f.t === 'close')) parentPort.postMessage([{ t: 'closed' }]);
    });
  `, { eval: true, workerData: { frames } }), () => {
    opened++;
    const end = performance.now() + 5;
    while (performance.now() < end);
  }, () => undefined);
  t.after(() => link.close(0));
  const lag = await link.lag(5000);
  assert.deepEqual(lag, { thread: 0, p50: 0.001, p99: 0.002, max: 0.003 });
  assert.ok(opened < 100, `answered after ${opened} of 200 calls' frames`);
  await until('every call opened', () => opened === 200);
});

test('a call that opens after its thread died is not started: nothing would tell it its end', async (t) => {
  let exited = '';
  const frames = [open(1, '/n.Node/Report')];
  const codec = { serialize: () => Buffer.alloc(0), deserialize: (b: Buffer) => b, responseStream: false };
  const { link } = await RpcThreadLink.start(DATA, () => new Worker(`
    const { parentPort, workerData } = require('node:worker_threads');
    parentPort.postMessage([{ t: 'listening', port: 1 }]);
    setTimeout(() => { parentPort.postMessage(workerData.frames); process.exit(3); }, 20);
  `, { eval: true, workerData: { frames } }), (l, f) => l.track(new BridgedCall(l, codec, { id: f.id, metadata: new Metadata(), peer: f.peer, host: f.host, deadline: f.deadline, connection: f.connection })), (_l, why) => (exited = why));
  t.after(() => link.close(0));
  await until('the thread to exit', () => exited !== '');
  await new Promise((r) => setTimeout(r, 50));
  assert.match(exited, /exit code 3/);
  // Either the call opened before the exit was seen (and the exit ended it), or it was dropped: never a call left open.
  assert.equal(link.openCalls, 0);
});
