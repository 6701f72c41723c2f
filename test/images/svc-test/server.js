// The test service of issue 19's tests and benchmarks, run inside the image hivemind/svc-test:1
// (scripts/svc-test-image.sh): plain Node, no dependencies. One program, several behaviours:
//   node server.js [serve]              an HTTP service on $PORT (default 8000), routes below
//   node server.js crash                prints why on stderr and exits 3 at once (a crash on start)
//   node server.js unhealthy-after S    serves, but /health answers 500 once S seconds have passed
// Routes: /health, /hello (who answered: JSON with `boot`, new at every start), /stream?n=&ms= (a chunked line every ms),
// /sse?n=&ms= (server-sent events), /echo (a POST body streamed back as it comes), /bytes?n=
// (n bytes as fast as the client takes them), /slow (never answers; /closed counts the requests
// whose client went away), /probe?host=&port= (can this container open a TCP connection there?),
// /ws (a WebSocket echo: text frames back as they come), /file?path= (a file read back, a write tried).
'use strict';
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const crypto = require('node:crypto');
const fs = require('node:fs');

const mode = process.argv[2] || 'serve';
const port = Number(process.env.PORT || 8000);
const started = Date.now();
// Which process answered: a new id at every start (the hostname is the same in every task container).
const boot = crypto.randomUUID();
let closed = 0;

if (mode === 'crash') {
  console.error('svc-test: crashing on start, as asked (exit 3)');
  process.exit(3);
}
const unhealthyAfterMs = mode === 'unhealthy-after' ? Number(process.argv[3] || 5) * 1000 : Infinity;

function json(res, code, body) {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
}

function ticker(res, n, ms, line) {
  let i = 0;
  const timer = setInterval(() => {
    res.write(line(i));
    if (++i >= n) {
      clearInterval(timer);
      res.end();
    }
  }, ms);
  res.on('close', () => clearInterval(timer));
}

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  const q = (k, d) => Number(url.searchParams.get(k) ?? d);
  switch (url.pathname) {
    case '/health':
      return Date.now() - started < unhealthyAfterMs ? json(res, 200, { ok: true }) : json(res, 500, { ok: false, why: 'unhealthy, as asked' });
    case '/hello':
      return json(res, 200, { boot, hostname: os.hostname(), pid: process.pid, url: req.url, method: req.method, headers: req.headers, replica: process.env.HIVEMIND_REPLICA ?? '' });
    case '/stream':
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.flushHeaders();
      return ticker(res, q('n', 20), q('ms', 100), (i) => `tick ${i} ${Date.now()}\n`);
    case '/sse':
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.flushHeaders();
      return ticker(res, q('n', 20), q('ms', 100), (i) => `data: token ${i}\n\n`);
    case '/echo':
      res.writeHead(200, { 'content-type': req.headers['content-type'] || 'application/octet-stream' });
      res.flushHeaders();
      return void req.pipe(res);
    case '/bytes': {
      let left = q('n', 1024 * 1024);
      const chunk = Buffer.alloc(256 * 1024, 120);
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(left) });
      const pump = () => {
        while (left > 0) {
          const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
          left -= part.length;
          if (!res.write(part)) return void res.once('drain', pump);
        }
        res.end();
      };
      return pump();
    }
    case '/slow':
      req.on('close', () => {
        if (!res.writableEnded) closed += 1;
      });
      return;
    case '/closed':
      return json(res, 200, { closed });
    case '/file': {
      // A mounted data set, read back (and a write into it tried: it must be refused).
      const file = url.searchParams.get('path') || '';
      let written = 'refused';
      try {
        fs.appendFileSync(file, 'x');
        written = 'written';
      } catch (e) {
        written = e.code || 'refused';
      }
      try {
        return json(res, 200, { content: fs.readFileSync(file, 'utf8'), write: written });
      } catch (e) {
        return json(res, 404, { error: e.code || e.message });
      }
    }
    case '/probe': {
      const s = net.connect({ host: url.searchParams.get('host') || '127.0.0.1', port: q('port', 80), timeout: 1500 });
      const done = (reachable, error) => {
        s.destroy();
        json(res, 200, { reachable, error });
      };
      s.once('connect', () => done(true, ''));
      s.once('timeout', () => done(false, 'timeout'));
      s.once('error', (e) => done(false, e.code || e.message));
      return;
    }
    default:
      return json(res, 404, { error: `no route ${url.pathname}` });
  }
});

// A minimal WebSocket echo (RFC 6455): unfragmented text frames up to 64 KiB, masked from the client.
server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  if (new URL(req.url, 'http://x').pathname !== '/ws' || !key) return socket.destroy();
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    for (;;) {
      if (buf.length < 2) return;
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let at = 2;
      if (len === 126) {
        if (buf.length < 4) return;
        len = buf.readUInt16BE(2);
        at = 4;
      } else if (len === 127) return socket.destroy();
      const masked = (buf[1] & 0x80) !== 0;
      if (buf.length < at + (masked ? 4 : 0) + len) return;
      const mask = masked ? buf.subarray(at, at + 4) : undefined;
      at += masked ? 4 : 0;
      const payload = Buffer.from(buf.subarray(at, at + len));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buf = buf.subarray(at + len);
      if (op === 8) return socket.end(Buffer.from([0x88, 0]));
      if (op !== 1) continue;
      const body = Buffer.from(`echo: ${payload.toString()}`);
      const head = body.length < 126 ? Buffer.from([0x81, body.length]) : Buffer.from([0x81, 126, body.length >> 8, body.length & 0xff]);
      socket.write(Buffer.concat([head, body]));
    }
  });
  socket.on('error', () => socket.destroy());
});

server.listen(port, '0.0.0.0', () => console.log(`svc-test: ${mode} on port ${port}`));
process.on('SIGTERM', () => {
  console.log('svc-test: SIGTERM, closing');
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 500).unref();
});
