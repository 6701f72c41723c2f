// The test "internet" host, run as its own process inside a test network namespace: an HTTP
// server on port 80 that answers every GET with BODY, and a DNS server on UDP port 53 that answers
// the A query for NAME with ADDRESS (and NXDOMAIN for any other name). Prints one JSON line per
// request ({"http":path} or {"dns":name}) so the test sees what reached it. /big and POST: see below.
// Usage: node test-internet-server.js ADDRESS NAME BODY; prints {"listening":true} once both listen.
import { createSocket } from 'node:dgram';
import { createServer } from 'node:http';

const [address, name, body] = process.argv.slice(2) as [string, string, string];

// GET /big: 1 MiB of zeros; POST: the body is read whole and its size answered.
const http = createServer((req, res) => {
  process.stdout.write(`${JSON.stringify({ http: req.url ?? '' })}\n`);
  if (req.method === 'POST') {
    let n = 0;
    req.on('data', (d: Buffer) => (n += d.length));
    req.on('end', () => res.writeHead(200, { 'content-type': 'text/plain' }).end(`received ${n}`));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' }).end(req.url === '/big' ? Buffer.alloc(1024 * 1024) : body);
});

/** The question's name and where the question ends, or undefined for a malformed query. */
function question(msg: Buffer): { qname: string; end: number; qtype: number } | undefined {
  let i = 12;
  const labels: string[] = [];
  while (i < msg.length && msg[i]! !== 0) {
    const n = msg[i]!;
    if (n > 63 || i + 1 + n > msg.length) return undefined;
    labels.push(msg.subarray(i + 1, i + 1 + n).toString('latin1'));
    i += 1 + n;
  }
  if (i + 5 > msg.length) return undefined;
  return { qname: labels.join('.').toLowerCase(), end: i + 5, qtype: msg.readUInt16BE(i + 1) };
}

const dns = createSocket('udp4');
dns.on('message', (msg, rinfo) => {
  if (msg.length < 12) return;
  const q = question(msg);
  if (!q) return;
  process.stdout.write(`${JSON.stringify({ dns: q.qname, type: q.qtype })}\n`);
  const known = q.qname === name.toLowerCase();
  const answerA = known && q.qtype === 1;
  const header = Buffer.alloc(12);
  header.writeUInt16BE(msg.readUInt16BE(0), 0);
  header.writeUInt16BE(known ? 0x8180 : 0x8183, 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(answerA ? 1 : 0, 6);
  const parts = [header, msg.subarray(12, q.end)];
  if (answerA) {
    const rr = Buffer.alloc(16);
    rr.writeUInt16BE(0xc00c, 0);
    rr.writeUInt16BE(1, 2);
    rr.writeUInt16BE(1, 4);
    rr.writeUInt32BE(60, 6);
    rr.writeUInt16BE(4, 10);
    address.split('.').forEach((o, k) => rr.writeUInt8(Number(o), 12 + k));
    parts.push(rr);
  }
  dns.send(Buffer.concat(parts), rinfo.port, rinfo.address);
});

let up = 0;
const listening = () => {
  if (++up === 2) process.stdout.write('{"listening":true}\n');
};
http.listen(80, address, listening);
dns.bind(53, address, listening);
