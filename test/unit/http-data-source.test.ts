// The http(s) source of external data sets against a real HTTP server on loopback: a Range resume
// from the partial file's end, a server that ignores the Range, a connection cut mid-body (retried
// from where it stopped), 404, a size that disagrees with the task's, more bytes than announced,
// and a redirect to a non-http scheme (refused).
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { DataFetchError, HttpDataSource } from '../../src/worker/data-cache/http-data-source.js';
import { recordHostile } from '../helpers/fault-ledger.js';

const BODY = randomBytes(200_000);
const fast = new HttpDataSource({ maxRedirects: 3, idleTimeoutMs: 2_000, retries: 2, retryDelayMs: 10 });

async function serve(t: TestContext, handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<string> {
  const server = createServer(handler);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  t.after(() => new Promise<void>((r) => server.close(() => r())));
  server.closeIdleConnections?.();
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/model.bin`;
}

/** A server honouring `Range: bytes=N-`; `requests` records each request's range header. */
function rangeServer(requests: (string | undefined)[], body = BODY) {
  return (req: IncomingMessage, res: ServerResponse) => {
    requests.push(req.headers.range);
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-length': body.length });
      return res.end();
    }
    if (m) {
      const from = Number(m[1]);
      res.writeHead(206, { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}`, 'content-length': body.length - from });
      return res.end(body.subarray(from));
    }
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  };
}

async function collect(src: AsyncIterable<{ offset: number; data: Uint8Array }>, from: number): Promise<Buffer> {
  const parts: Buffer[] = [];
  let at = from;
  for await (const c of src) {
    assert.equal(c.offset, at, 'chunks are contiguous');
    at += c.data.length;
    parts.push(Buffer.from(c.data));
  }
  return Buffer.concat(parts);
}

test('http source: a fetch from an offset sends a Range and yields the rest; HEAD gives the size', async (t) => {
  const requests: (string | undefined)[] = [];
  const url = await serve(t, rangeServer(requests));
  const signal = new AbortController().signal;
  assert.equal(await fast.size(url, signal), BODY.length);
  const rest = await collect(fast.fetch(url, BODY.length, 150_000, signal), 150_000);
  assert.deepEqual(rest, BODY.subarray(150_000));
  assert.deepEqual(requests.slice(1), ['bytes=150000-']);
});

test('http source: a server that ignores the Range is read past what the partial holds', async (t) => {
  const url = await serve(t, (_req, res) => {
    res.writeHead(200, { 'content-length': BODY.length });
    res.end(BODY);
  });
  const rest = await collect(fast.fetch(url, BODY.length, 70_000, new AbortController().signal), 70_000);
  assert.deepEqual(rest, BODY.subarray(70_000));
});

test('http source: a body cut mid-way is requested again from where it stopped', async (t) => {
  const requests: (string | undefined)[] = [];
  const inner = rangeServer(requests);
  let first = true;
  const url = await serve(t, (req, res) => {
    if (first) {
      first = false;
      requests.push(req.headers.range);
      res.writeHead(200, { 'content-length': BODY.length });
      res.write(BODY.subarray(0, 50_000), () => setTimeout(() => res.socket?.destroy(), 20));
      return;
    }
    inner(req, res);
  });
  const all = await collect(fast.fetch(url, BODY.length, 0, new AbortController().signal), 0);
  assert.deepEqual(all, BODY);
  assert.equal(requests.length, 2);
  assert.match(requests[1] ?? '', /^bytes=\d+-$/, 'the retry resumes with a Range');
  assert.ok(Number(/\d+/.exec(requests[1]!)![0]) >= 50_000 - 1, 'from where the cut body ended');
});

test('http source: 404 is a clear, final error naming the url and the status', async (t) => {
  let calls = 0;
  const url = await serve(t, (_req, res) => {
    calls++;
    res.writeHead(404, 'Not Found');
    res.end();
  });
  await assert.rejects(collect(fast.fetch(url, 10, 0, new AbortController().signal), 0), (err: unknown) => {
    assert.ok(err instanceof DataFetchError);
    assert.match(err.message, /the data set url ".*\/model\.bin" answered 404 Not Found/);
    return true;
  });
  assert.equal(calls, 1, 'a 4xx is not retried');
});

test('http source: a 5xx is retried, then given up with a clear error', async (t) => {
  let calls = 0;
  const url = await serve(t, (_req, res) => {
    calls++;
    res.writeHead(503, 'Service Unavailable');
    res.end();
  });
  await assert.rejects(collect(fast.fetch(url, 10, 0, new AbortController().signal), 0), /answered 503 Service Unavailable \(gave up after retries\)/);
  assert.equal(calls, 3, 'the first request and 2 retries');
});

test('hostile url server: a size other than the task\'s, or more bytes than announced, is refused before it reaches the disk', async (t) => {
  const requests: (string | undefined)[] = [];
  const url = await serve(t, rangeServer(requests));
  recordHostile('data url: Content-Length other than the task\'s size', false);
  await assert.rejects(collect(fast.fetch(url, BODY.length - 1, 0, new AbortController().signal), 0), /is 200000 bytes, not the 199999 the task names/);
  // no Content-Length, endless body
  const endless = await serve(t, (_req, res) => {
    res.writeHead(200);
    res.write(BODY);
    res.end(BODY);
  });
  let got = 0;
  recordHostile('data url: more bytes than the task\'s size (no Content-Length)', false);
  await assert.rejects(
    (async () => {
      for await (const c of fast.fetch(endless, 1000, 0, new AbortController().signal)) got += c.data.length;
    })(),
    /sent more than the data set's 1000 bytes/,
  );
  assert.equal(got, 0, 'no byte past the size was handed on');
});

test('hostile url server: a redirect to a file: url is refused; to another http url it is followed', async (t) => {
  const requests: (string | undefined)[] = [];
  const target = await serve(t, rangeServer(requests));
  const viaHttp = await serve(t, (_req, res) => {
    res.writeHead(302, { location: target });
    res.end();
  });
  assert.deepEqual(await collect(fast.fetch(viaHttp, BODY.length, 0, new AbortController().signal), 0), BODY);
  const toFile = await serve(t, (_req, res) => {
    res.writeHead(301, { location: 'file:///etc/passwd' });
    res.end();
  });
  recordHostile('data url: redirect to file:///etc/passwd', false);
  await assert.rejects(collect(fast.fetch(toFile, 10, 0, new AbortController().signal), 0), (err: unknown) => {
    assert.ok(err instanceof DataFetchError);
    assert.match(err.message, /redirects to a file address \("file:\/\/\/etc\/passwd"\): only http and https are fetched/);
    return true;
  });
  const loop = await serve(t, (req, res) => {
    res.writeHead(302, { location: req.url! });
    res.end();
  });
  recordHostile('data url: endless redirect loop', false);
  await assert.rejects(collect(fast.fetch(loop, 10, 0, new AbortController().signal), 0), /more than 3 redirects/);
});

test('http source: a server refusing HEAD (a presigned GET url) is asked its size with a GET of one byte', async (t) => {
  const seen: string[] = [];
  const url = await serve(t, (req, res) => {
    seen.push(`${req.method} ${req.headers.range ?? ''}`);
    if (req.method === 'HEAD') {
      res.writeHead(403, 'Forbidden');
      return res.end();
    }
    res.writeHead(206, { 'content-range': `bytes 0-0/${BODY.length}`, 'content-length': 1 });
    res.end(BODY.subarray(0, 1));
  });
  assert.equal(await fast.size(url, new AbortController().signal), BODY.length);
  assert.deepEqual(seen, ['HEAD ', 'GET bytes=0-0']);
  const silent = await serve(t, (req, res) => {
    res.writeHead(req.method === 'HEAD' ? 405 : 200);
    res.end();
  });
  await assert.rejects(fast.size(silent, new AbortController().signal), /does not announce its size \(neither HEAD nor a ranged GET says it\)/);
});
