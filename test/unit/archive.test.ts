// Safe tar filter: malicious archives crafted with tar-stream must fail with a message naming the
// entry; clean ones must pass through unchanged in content.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { createGzip } from 'node:zlib';
import tarStream, { type Header } from 'tar-stream';
import { safeTar, gunzipStream, type SafeTarOptions } from '../../src/archive/safe-tar.js';
import { UnsafeArchiveError } from '../../src/common/errors.js';
import { recordHostile } from '../helpers/fault-ledger.js';

type Entry = Partial<Header> & { name: string; body?: string | Buffer };

async function makeTar(entries: Entry[]): Promise<Buffer> {
  const pack = tarStream.pack();
  const done = collect(Readable.from(pack as AsyncIterable<Buffer>));
  for (const e of entries) {
    const { body, ...header } = e;
    await new Promise<void>((resolve, reject) => {
      if (body !== undefined) pack.entry(header, body, (err) => (err ? reject(err) : resolve()));
      else {
        const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
        (sink as unknown as { end(): void }).end();
      }
    });
  }
  pack.finalize();
  return done;
}

async function collect(stream: AsyncIterable<Buffer | Uint8Array>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream) chunks.push(Buffer.from(c));
  return Buffer.concat(chunks);
}

async function listTar(buf: Buffer): Promise<Array<{ name: string; type: string; body: string; mode: number; uid: number; linkname: string | null }>> {
  const extract = tarStream.extract();
  const out: Array<{ name: string; type: string; body: string; mode: number; uid: number; linkname: string | null }> = [];
  Readable.from([buf]).pipe(extract as unknown as NodeJS.WritableStream);
  for await (const entry of extract) {
    const body = await collect(entry as AsyncIterable<Buffer>);
    out.push({ name: entry.header.name, type: entry.header.type, body: body.toString(), mode: entry.header.mode, uid: entry.header.uid, linkname: entry.header.linkname });
  }
  return out;
}

const OPTS: SafeTarOptions = { maxBytes: 1024 * 1024, maxEntries: 100, symlinks: 'contained', label: 'test archive' };

async function filter(buf: Buffer | Buffer[], opts: Partial<SafeTarOptions> = {}): Promise<Buffer> {
  return collect(safeTar(Readable.from(Array.isArray(buf) ? buf : [buf]), { ...OPTS, ...opts }));
}

/** Asserts the stream fails with UnsafeArchiveError matching `pattern`; counted as a hostile input. */
async function refuses(name: string, run: Promise<unknown>, pattern: RegExp): Promise<void> {
  const err = await run.then(() => undefined, (e: unknown) => e);
  recordHostile(`archive: ${name}`, !(err instanceof UnsafeArchiveError && pattern.test(err.message)));
  assert.ok(err instanceof UnsafeArchiveError, `expected UnsafeArchiveError, got ${String(err)}`);
  assert.match(err.message, pattern);
}

async function rejects(entries: Entry[], pattern: RegExp, opts: Partial<SafeTarOptions> = {}): Promise<void> {
  const tar = await makeTar(entries);
  await refuses(entries.map((e) => `${e.type ?? 'file'} ${e.name.slice(0, 40)}`).join(', '), filter(tar, opts), pattern);
}

test('a clean archive passes with content, modes normalised and owner rewritten', async () => {
  const tar = await makeTar([
    { name: 'dir/', type: 'directory', mode: 0o755 },
    { name: 'dir/a.txt', body: 'hello', mode: 0o4755 },
    { name: './b.txt', body: 'world', mode: 0o644 },
    { name: 'dir/link', type: 'symlink', linkname: '../b.txt' },
  ]);
  const out = await listTar(await filter(tar, { owner: { uid: 65534, gid: 65534 } }));
  assert.deepEqual(out.map((e) => [e.name, e.type, e.body]), [
    ['dir/', 'directory', ''],
    ['dir/a.txt', 'file', 'hello'],
    ['b.txt', 'file', 'world'],
    ['dir/link', 'symlink', ''],
  ]);
  assert.equal(out[1]!.mode, 0o755, 'setuid bit stripped');
  assert.ok(out.every((e) => e.uid === 65534));
  assert.equal(out[3]!.linkname, '../b.txt');
});

test('stripComponents drops the leading directory and its root entry', async () => {
  const tar = await makeTar([
    { name: 'output/', type: 'directory' },
    { name: 'output/x/', type: 'directory' },
    { name: 'output/x/y.txt', body: 'y' },
  ]);
  const out = await listTar(await filter(tar, { stripComponents: 1 }));
  assert.deepEqual(out.map((e) => e.name), ['x/', 'x/y.txt']);
});

test('rejects ".." components', async () => {
  await rejects([{ name: 'ok.txt', body: 'a' }, { name: 'a/../../etc/passwd', body: 'x' }], /entry "a\/\.\.\/\.\.\/etc\/passwd" has a "\.\." path component/);
  await rejects([{ name: '../x', body: 'x' }], /"\.\.\/x"/);
});

test('rejects absolute paths', async () => {
  await rejects([{ name: '/etc/cron.d/evil', body: 'x' }], /entry "\/etc\/cron\.d\/evil" has an absolute path/);
});

test('rejects symlinks escaping the root or absolute', async () => {
  await rejects([{ name: 'a/l', type: 'symlink', linkname: '../../etc' }], /entry "a\/l" is a symlink to "\.\.\/\.\.\/etc", which points outside/);
  await rejects([{ name: 'l', type: 'symlink', linkname: '/etc/passwd' }], /entry "l" is a symlink to the absolute path "\/etc\/passwd"/);
});

test('rejects ".." through another symlink and writing through a symlink', async () => {
  await rejects([{ name: 'r', type: 'symlink', linkname: '.' }, { name: 't', type: 'symlink', linkname: 'r/../x' }], /entry "t".*through the symlink "r"/);
  await rejects([{ name: 'd', type: 'symlink', linkname: 'sub' }, { name: 'd/f', body: 'x' }], /entry "d\/f" is written through the symlink "d"/);
});

test('symlinks policy "reject" refuses even contained links', async () => {
  await rejects([{ name: 'l', type: 'symlink', linkname: 'x' }], /entry "l" is a symlink .*not allowed/, { symlinks: 'reject' });
});

test('rejects hard links, devices and fifos', async () => {
  await rejects([{ name: 'a', body: 'x' }, { name: 'h', type: 'link', linkname: 'a' }], /entry "h" is a hard link/);
  await rejects([{ name: 'dev/null', type: 'character-device', devmajor: 1, devminor: 3 }], /entry "dev\/null" is a character-device/);
  await rejects([{ name: 'sda', type: 'block-device', devmajor: 8, devminor: 0 }], /entry "sda" is a block-device/);
  await rejects([{ name: 'p', type: 'fifo' }], /entry "p" is a fifo/);
});

test('rejects more entries than the cap', async () => {
  const entries = Array.from({ length: 11 }, (_, i) => ({ name: `f${i}`, body: 'x' }));
  await rejects(entries, /more than 10 entries \(at "f10"\)/, { maxEntries: 10 });
});

test('rejects a total over the byte cap, naming the entry that passes it', async () => {
  await rejects([{ name: 'a', body: Buffer.alloc(600) }, { name: 'b', body: Buffer.alloc(600) }], /entry "b" \(600 bytes\) takes the total over the 1000-byte cap/, { maxBytes: 1000 });
});

test('a gzip bomb fails once the cap is passed, without expanding everything', async () => {
  // 1 GiB of declared content compressed to ~1 MiB; the filter must stop after ~the cap.
  const pack = tarStream.pack();
  const gz = createGzip({ level: 1 });
  const produced = { bytes: 0 };
  const sink = pack.entry({ name: 'bomb.bin', size: 1024 ** 3 });
  void (async () => {
    const zero = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 1024; i++) {
      produced.bytes += zero.length;
      if (!sink.write(zero)) await new Promise<void>((r) => sink.once('drain', () => r()));
    }
    (sink as unknown as { end(): void }).end();
    pack.finalize();
  })().catch(() => {});
  const gzipped = Readable.from(pack as AsyncIterable<Buffer>).pipe(gz);
  await refuses('gzip bomb (1 GiB of zeros)', collect(safeTar(gunzipStream(gzipped), { ...OPTS, maxBytes: 10 * 1024 * 1024 })), /"bomb\.bin" \(1073741824 bytes\) takes the total over/);
  assert.ok(produced.bytes < 200 * 1024 * 1024, `expanded ${produced.bytes} bytes before failing`);
});

test('a stream of zero blocks (no entries) is refused as junk', async () => {
  let sent = 0;
  async function* zeros() {
    const z = Buffer.alloc(1024 * 1024);
    for (let i = 0; i < 1024; i++) {
      sent += z.length;
      yield z;
    }
  }
  await refuses('1 GiB of zero blocks', collect(safeTar(zeros(), OPTS)), /bytes of tar data hold only 0 entries/);
  assert.ok(sent < 16 * 1024 * 1024, `read ${sent} bytes`);
});

test('a truncated tar fails', async () => {
  const tar = await makeTar([{ name: 'big', body: Buffer.alloc(5000, 1) }]);
  await refuses('truncated tar', filter(tar.subarray(0, 2048)), /truncated/);
});

test('a truncated gzip fails', async () => {
  const gz = gzipSync(await makeTar([{ name: 'a', body: Buffer.alloc(100_000, 7) }]));
  await refuses('truncated gzip', collect(safeTar(gunzipStream(Readable.from([gz.subarray(0, gz.length - 20)])), OPTS)), /truncated/);
});

test('not gzip at all fails as corrupt', async () => {
  await refuses('not gzip at all', collect(safeTar(gunzipStream(Readable.from([Buffer.from('definitely not gzip data here')])), OPTS)), /corrupt/);
});

test('a huge pax header (a 32 MiB path) is refused after a few MiB, not buffered whole', async () => {
  // The pax record "<len> path=<32 MiB>\n" is a header entry of its own, before the file's header.
  const value = 'a/'.repeat(16 * 1024 * 1024);
  const record = `path=${value}\n`;
  let len = record.length + 10;
  len = record.length + String(len).length + 1;
  const pax = Buffer.from(`${len} ${record}`);
  const header = (name: string, size: number, type: string): Buffer => {
    const b = Buffer.alloc(512);
    b.write(name, 0);
    b.write('0000644\0', 100);
    b.write('0000000\0', 108);
    b.write('0000000\0', 116);
    b.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
    b.write('00000000000\0', 136);
    b.write('        ', 148);
    b.write(type, 156);
    b.write('ustar\u000000', 257);
    let sum = 0;
    for (const c of b) sum += c;
    b.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
    return b;
  };
  let sent = 0;
  async function* stream() {
    yield header('PaxHeader', pax.length, 'x');
    for (let i = 0; i < pax.length; i += 1024 * 1024) {
      const part = pax.subarray(i, i + 1024 * 1024);
      sent += part.length;
      yield part;
    }
  }
  await refuses('32 MiB pax header', collect(safeTar(stream(), OPTS)), /Header exceeds max size|refusing padding\/header junk/);
  assert.ok(sent < 12 * 1024 * 1024, `read ${sent} bytes of header before refusing`);
});

test('large files stream through in small chunks', async () => {
  const body = Buffer.alloc(3 * 1024 * 1024 + 7, 0xab);
  const tar = await makeTar([{ name: 'big.bin', body }]);
  const chunks: Buffer[] = [];
  for (let i = 0; i < tar.length; i += 4096) chunks.push(tar.subarray(i, i + 4096));
  const out = await listTar(await filter(chunks, { maxBytes: 8 * 1024 * 1024 }));
  assert.equal(out.length, 1);
  assert.equal(out[0]!.body.length, body.length);
});
