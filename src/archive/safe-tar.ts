// Streaming safety filter for tar archives: re-packs entry by entry (constant memory, with
// backpressure) and fails with UnsafeArchiveError on anything that could escape the extraction
// root, on special files, and as soon as a size or entry cap is passed (so a gzip bomb dies early).
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream';
import { createGunzip, createGzip } from 'node:zlib';
import tarStream, { type Header } from 'tar-stream';
import { ArchiveCapError, UnsafeArchiveError, errorMessage } from '../common/errors.js';

export type SymlinkPolicy =
  /** Every symlink fails the archive. */
  | 'reject'
  /** Relative symlinks whose target stays inside the root are kept; others fail the archive. */
  | 'contained';

export interface SafeTarOptions {
  /** Cap on the sum of entry sizes (uncompressed content bytes). */
  maxBytes: number;
  /** Cap on the number of entries (files, directories, links). */
  maxEntries: number;
  symlinks: SymlinkPolicy;
  /** Drop this many leading path components (e.g. 1 for Docker's `output/...` archives). */
  stripComponents?: number;
  /** Rewrite every entry's owner (e.g. to the task user for /input). */
  owner?: { uid: number; gid: number };
  /** Names the archive in error messages ("input archive", "/output"). */
  label?: string;
}

export interface SafeEntry {
  /** Normalised relative path; directories end with "/". */
  name: string;
  type: 'file' | 'directory' | 'symlink';
  size: number;
  mode: number;
  linkname?: string;
}

export interface SafeTarStats {
  entries: number;
  bytes: number;
}

// Non-content bytes allowed per entry (header block, padding, pax/long-name headers) before the raw
// stream is considered junk, plus slack for chunks read ahead of the parser.
const RAW_PER_ENTRY_ALLOWANCE = 4096;
const RAW_SLACK = 4 * 1024 * 1024;

/**
 * Filters a tar stream. The returned stream is a clean tar of the accepted entries; it errors with
 * UnsafeArchiveError (naming the entry) on the first violation. `onEntry` sees each accepted entry.
 */
export function safeTar(source: AsyncIterable<Buffer | Uint8Array | string>, opts: SafeTarOptions, hooks: { onEntry?: (e: SafeEntry) => void; onDone?: (s: SafeTarStats) => void } = {}): Readable {
  const label = opts.label ?? 'archive';
  const extract = tarStream.extract();
  const pack = tarStream.pack();
  let failure: Error | undefined;
  let rawBytes = 0;
  let declaredRaw = 0;
  let entries = 0;
  let bytes = 0;
  const symlinkPaths = new Set<string>();
  const srcStream = source as unknown as { destroy?: (err?: Error) => void };

  const fail = (err: unknown): void => {
    if (failure) return;
    failure = toArchiveError(err, label);
    extract.destroy(failure);
    srcStream.destroy?.();
    pack.destroy(failure);
  };

  const feed = async (): Promise<void> => {
    for await (const chunk of source) {
      if (failure) return;
      const buf = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
      rawBytes += buf.byteLength;
      // Bytes that belong to no entry (zero blocks, endless pax headers) are a bomb too.
      if (rawBytes > declaredRaw + RAW_PER_ENTRY_ALLOWANCE * (entries + 1) + RAW_SLACK) {
        throw new UnsafeArchiveError(`${label}: ${rawBytes} bytes of tar data hold only ${entries} entries (${bytes} content bytes); refusing padding/header junk`);
      }
      if (!extract.write(buf)) await waitDrain(extract);
    }
    if (!failure) endWritable(extract);
  };

  const consume = async (): Promise<void> => {
    for await (const entry of extract) {
      const header = entry.header;
      entries++;
      if (entries > opts.maxEntries) {
        throw new ArchiveCapError(`${label}: more than ${opts.maxEntries} entries (at "${header.name}")`, 'entries', opts.maxEntries, header.name);
      }
      declaredRaw += 512 + Math.ceil(header.size / 512) * 512;
      const checked = checkEntry(header, opts, symlinkPaths, label);
      if (checked && checked.type === 'file' && bytes + header.size > opts.maxBytes) {
        throw new ArchiveCapError(`${label}: entry "${header.name}" (${header.size} bytes) takes the total over the ${opts.maxBytes}-byte cap`, 'bytes', opts.maxBytes, header.name);
      }
      if (!checked) {
        // A skipped entry (the root itself): drain it.
        for await (const _ of entry) void _;
        continue;
      }
      const out: Partial<Header> & { name: string } = {
        name: checked.name,
        type: checked.type,
        size: checked.type === 'file' ? header.size : 0,
        mode: checked.mode,
        mtime: header.mtime,
        uid: opts.owner?.uid ?? header.uid,
        gid: opts.owner?.gid ?? header.gid,
        uname: '',
        gname: '',
      };
      if (checked.linkname !== undefined) out.linkname = checked.linkname;
      await new Promise<void>((resolve, reject) => {
        const sink = pack.entry(out, (err) => (err ? reject(err) : resolve()));
        sink.on('error', () => {}); // reported through the entry callback and the pack
        void (async () => {
          if (checked.type === 'file') {
            let written = 0;
            for await (const chunk of entry as AsyncIterable<Buffer>) {
              written += chunk.byteLength;
              bytes += chunk.byteLength;
              if (bytes > opts.maxBytes) throw new ArchiveCapError(`${label}: total size passes the ${opts.maxBytes}-byte cap at "${header.name}"`, 'bytes', opts.maxBytes, header.name);
              if (!sink.write(chunk)) await waitDrain(sink);
            }
            if (written !== header.size) throw new UnsafeArchiveError(`${label}: entry "${header.name}" is truncated (${written} of ${header.size} bytes)`);
          } else {
            for await (const _ of entry) void _;
          }
          endWritable(sink);
        })().catch((err: unknown) => {
          reject(err);
        });
      });
      hooks.onEntry?.(checked);
    }
    if (failure) return;
    pack.finalize();
    hooks.onDone?.({ entries, bytes });
  };

  // Errors reach the caller through the returned stream; these stop a second emission from
  // becoming an uncaught exception.
  extract.on('error', () => {});
  pack.on('error', () => {});
  feed().catch(fail);
  consume().catch(fail);
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}

/** Normalises and checks one header; returns null for entries to skip (the root directory). */
function checkEntry(header: Header, opts: SafeTarOptions, symlinkPaths: Set<string>, label: string): SafeEntry | null {
  const raw = header.name;
  const what = `${label}: entry "${raw}"`;
  if (raw.includes('\0')) throw new UnsafeArchiveError(`${what} has a NUL byte in its name`);
  if (raw.startsWith('/')) throw new UnsafeArchiveError(`${what} has an absolute path`);
  const parts = raw.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.includes('..')) throw new UnsafeArchiveError(`${what} has a ".." path component`);
  const strip = opts.stripComponents ?? 0;
  const kept = parts.slice(strip);
  if (kept.length === 0) {
    if (header.type === 'directory') return null;
    throw new UnsafeArchiveError(`${what} has no name left after removing ${strip} leading component(s)`);
  }
  const rel = kept.join('/');
  for (let i = 1; i < kept.length; i++) {
    const parent = kept.slice(0, i).join('/');
    if (symlinkPaths.has(parent)) throw new UnsafeArchiveError(`${what} is written through the symlink "${parent}"`);
  }
  const mode = header.mode & 0o777; // never setuid/setgid/sticky
  switch (header.type) {
    case 'file':
    case 'contiguous-file':
      return { name: rel, type: 'file', size: header.size, mode };
    case 'directory':
      return { name: `${rel}/`, type: 'directory', size: 0, mode };
    case 'symlink': {
      if (opts.symlinks === 'reject') throw new UnsafeArchiveError(`${what} is a symlink (to "${header.linkname}"); symlinks are not allowed here`);
      const target = header.linkname;
      if (!target) throw new UnsafeArchiveError(`${what} is a symlink with an empty target`);
      if (target.startsWith('/')) throw new UnsafeArchiveError(`${what} is a symlink to the absolute path "${target}"`);
      checkLinkTarget(kept, target, symlinkPaths, what);
      symlinkPaths.add(rel);
      return { name: rel, type: 'symlink', size: 0, mode: 0o777, linkname: target };
    }
    case 'link':
      throw new UnsafeArchiveError(`${what} is a hard link (to "${header.linkname}"); hard links are not allowed`);
    case 'character-device':
    case 'block-device':
      throw new UnsafeArchiveError(`${what} is a ${header.type}; device files are not allowed`);
    case 'fifo':
      throw new UnsafeArchiveError(`${what} is a fifo; special files are not allowed`);
    default:
      throw new UnsafeArchiveError(`${what} has the unsupported type "${String(header.type)}"`);
  }
}

/**
 * Resolves a relative symlink target from the link's directory. Besides the lexical check, a ".."
 * right after a component that is itself a symlink is refused, since the OS resolves it from the
 * link's target, not lexically (e.g. `r -> .` then `t -> r/../x` escapes).
 */
function checkLinkTarget(linkParts: string[], target: string, symlinkPaths: Set<string>, what: string): void {
  const stack = linkParts.slice(0, -1);
  for (const comp of target.split('/')) {
    if (comp === '' || comp === '.') continue;
    if (comp === '..') {
      if (stack.length === 0) throw new UnsafeArchiveError(`${what} is a symlink to "${target}", which points outside the archive root`);
      const here = stack.join('/');
      if (symlinkPaths.has(here)) throw new UnsafeArchiveError(`${what} is a symlink to "${target}", which goes ".." through the symlink "${here}"`);
      stack.pop();
    } else {
      stack.push(comp);
    }
  }
}

function toArchiveError(err: unknown, label: string): Error {
  if (err instanceof UnsafeArchiveError) return err;
  const msg = errorMessage(err);
  if (/unexpected end/i.test(msg)) return new UnsafeArchiveError(`${label} is truncated (${msg})`);
  if (/incorrect header check|invalid|header|unknown compression/i.test(msg)) return new UnsafeArchiveError(`${label} is corrupt (${msg})`);
  return err instanceof Error ? err : new Error(msg);
}

function waitDrain(stream: { once(ev: string, fn: (...a: unknown[]) => void): unknown; off?(ev: string, fn: (...a: unknown[]) => void): unknown; destroyed?: boolean }): Promise<void> {
  return new Promise((resolve, reject) => {
    if (stream.destroyed) {
      reject(new Error('stream destroyed'));
      return;
    }
    const cleanup = () => {
      stream.off?.('drain', onDrain);
      stream.off?.('close', onClose);
      stream.off?.('error', onError);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onClose = () => {
      cleanup();
      reject(new Error('stream closed while writing'));
    };
    const onError = (err: unknown) => {
      cleanup();
      reject(err);
    };
    stream.once('drain', onDrain);
    stream.once('close', onClose);
    stream.once('error', onError);
  });
}

/**
 * Gunzips a stream for safeTar. Corrupt or truncated gzip errors the stream, and safeTar reports
 * it as UnsafeArchiveError. The decompressed size is bounded by safeTar's caps: it stops reading
 * (and destroys this stream) once they are passed.
 */
export function gunzipStream(source: Readable): Readable {
  return pipeline(source, createGunzip(), () => {});
}

export function gzipStream(level = 6): ReturnType<typeof createGzip> {
  return createGzip({ level });
}

// streamx's typings demand an argument to end(); it accepts none at run time.
function endWritable(stream: object): void {
  (stream as { end(): void }).end();
}
