// A small HTTP file server run as its own process (inside a test network namespace): it serves the
// files of a directory with Range support, and prints one JSON line per request (method, path,
// Range header, bytes of body sent) so the test can see what a node asked for. Its faults, by path:
//   /cut/NAME       the first GET is cut half-way through its body (the connection is dropped);
//   /redirect/NAME  answers a redirect to a file: url.
// Usage: node range-file-server.js DIR HOST PORT; prints {"listening":true} once it listens.
import { readFileSync } from 'node:fs';
import { createServer, type ServerResponse } from 'node:http';
import { basename, join } from 'node:path';

export interface ServedRequest {
  method: string;
  path: string;
  range: string | null;
  status: number;
  /** Body bytes written to the connection. */
  sent: number;
  cut?: boolean;
}

const [dir, host, port] = process.argv.slice(2);
const cutOnce = new Set<string>();

const server = createServer((req, res) => {
  const path = new URL(req.url ?? '/', 'http://server').pathname;
  const range = req.headers.range ?? null;
  const log = (status: number, sent: number, cut?: boolean) =>
    process.stdout.write(`${JSON.stringify({ method: req.method ?? '', path, range, status, sent, ...(cut ? { cut } : {}) } satisfies ServedRequest)}\n`);
  if (path.startsWith('/redirect/')) {
    res.writeHead(302, { location: 'file:///etc/passwd' }).end();
    return log(302, 0);
  }
  let body: Buffer;
  try {
    body = readFileSync(join(dir!, basename(path)));
  } catch {
    res.writeHead(404).end();
    return log(404, 0);
  }
  const m = /^bytes=(\d+)-$/.exec(range ?? '');
  const from = m ? Number(m[1]) : 0;
  const part = body.subarray(from);
  const status = m ? 206 : 200;
  res.writeHead(status, { 'content-length': part.length, ...(m ? { 'content-range': `bytes ${from}-${body.length - 1}/${body.length}` } : {}) });
  if (req.method === 'HEAD') {
    res.end();
    return log(status, 0);
  }
  if (path.startsWith('/cut/') && !cutOnce.has(path)) {
    cutOnce.add(path);
    return cut(res, part.subarray(0, Math.floor(part.length / 2)), (sent) => log(status, sent, true));
  }
  res.end(part, () => log(status, part.length));
});

/** Writes `half` and drops the connection once it is flushed: the client sees a short body. */
function cut(res: ServerResponse, half: Buffer, done: (sent: number) => void): void {
  res.write(half, () => {
    res.socket?.destroy();
    done(half.length);
  });
}

server.listen(Number(port), host, () => process.stdout.write(`${JSON.stringify({ listening: true })}\n`));
process.on('SIGTERM', () => server.close(() => process.exit(0)));
