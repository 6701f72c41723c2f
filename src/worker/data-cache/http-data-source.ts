// The bytes of an external data set (a task's `URL@sha256:…` mount), fetched by the node itself over
// http(s): resumed with a Range request from where the cache's partial file ends, retried on a
// dropped connection or a server error, and never more than the data set's size. Everything the
// server says is hostile: a redirect may only lead to another http(s) address, its sizes must agree
// with the task's, and the bytes are checked against the digest by the cache, not here.
import http, { type IncomingMessage } from 'node:http';
import https from 'node:https';
import { HivemindError, errorMessage } from '../../common/errors.js';
import { echoValue } from '../../common/echo-value.js';
import { sleep } from '../../common/sleep.js';
import type { OffsetChunk } from '../../transfer/resumable-download.js';

/** The server refused the data set or answered nonsense: retrying will not help. */
export class DataFetchError extends HivemindError {
  constructor(message: string) {
    super('DATA_FETCH_FAILED', message);
  }
}

/** A failure worth another request (the connection dropped, the server was busy). */
class TransientFetchError extends Error {}

export interface HttpSourceOptions {
  /** Redirects followed per request. */
  maxRedirects: number;
  /** A response silent this long is dropped (and retried). */
  idleTimeoutMs: number;
  /** Requests after the first one failed in a transient way, per fetch. */
  retries: number;
  /** The first retry waits this long, doubling. */
  retryDelayMs: number;
}

export const HTTP_SOURCE_DEFAULTS: HttpSourceOptions = { maxRedirects: 5, idleTimeoutMs: 60_000, retries: 5, retryDelayMs: 1_000 };

export class HttpDataSource {
  constructor(private readonly opts: HttpSourceOptions = HTTP_SOURCE_DEFAULTS) {}

  /**
   * The data set's size as the server announces it (a task may name an url without its size): HEAD,
   * or, for a server that refuses HEAD (a presigned GET url, say), a GET of its first byte.
   */
  async size(url: string, signal: AbortSignal): Promise<number> {
    const head = await this.withRetries(url, signal, () => this.request(url, 'HEAD', undefined, signal)).catch((err: unknown) => {
      if (signal.aborted || !(err instanceof DataFetchError)) throw err;
      return undefined;
    });
    head?.resume();
    const n = head ? Number(head.headers['content-length']) : NaN;
    if (head?.statusCode === 200 && Number.isSafeInteger(n) && n >= 0) return n;
    const res = await this.withRetries(url, signal, () => this.request(url, 'GET', 'bytes=0-0', signal));
    res.destroy();
    const total = res.statusCode === 206 ? /\/(\d+)$/.exec(res.headers['content-range'] ?? '')?.[1] : res.headers['content-length'];
    const size = Number(total);
    if (total === undefined || !Number.isSafeInteger(size) || size < 0) {
      throw new DataFetchError(`${shown(url)} does not announce its size (neither HEAD nor a ranged GET says it)`);
    }
    return size;
  }

  /** The bytes from `offset` to `size`, as offset-stamped chunks. */
  async *fetch(url: string, size: number, offset: number, signal: AbortSignal): AsyncGenerator<OffsetChunk> {
    let at = offset;
    for (let failures = 0; at < size; ) {
      try {
        const res = await this.request(url, 'GET', at > 0 ? `bytes=${at}-` : undefined, signal);
        let skip = this.checkBody(url, res, at, size);
        for await (const buf of res as AsyncIterable<Buffer>) {
          let data = buf;
          if (skip > 0) {
            // The server ignored the Range: what the partial file already holds is read past.
            const n = Math.min(skip, data.length);
            skip -= n;
            data = data.subarray(n);
            if (data.length === 0) continue;
          }
          if (at + data.length > size) throw new DataFetchError(`${shown(url)} sent more than the data set's ${size} bytes`);
          yield { offset: at, data };
          at += data.length;
          failures = 0;
        }
        if (at < size) throw new TransientFetchError(`the response ended at byte ${at} of ${size}`);
      } catch (err) {
        // Our own refusals are final; a body cut by the network (ECONNRESET, "aborted") is retried.
        if (signal.aborted || err instanceof HivemindError || failures >= this.opts.retries) throw finalError(url, err);
        await sleep(this.opts.retryDelayMs * 2 ** failures++, signal);
      }
    }
  }

  private async withRetries<T>(url: string, signal: AbortSignal, fn: () => Promise<T>): Promise<T> {
    for (let failures = 0; ; failures++) {
      try {
        return await fn();
      } catch (err) {
        if (signal.aborted || !(err instanceof TransientFetchError) || failures >= this.opts.retries) throw finalError(url, err);
        await sleep(this.opts.retryDelayMs * 2 ** failures, signal);
      }
    }
  }

  /** Bytes of the body to read past (the server ignored the Range); throws on sizes that disagree. */
  private checkBody(url: string, res: IncomingMessage, at: number, size: number): number {
    const length = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
    if (res.statusCode === 206) {
      const m = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers['content-range'] ?? '');
      if (!m || Number(m[1]) !== at) throw new DataFetchError(`${shown(url)} answered the range from byte ${at} with "${echoValue(res.headers['content-range'] ?? '')}"`);
      if (m[3] !== '*' && Number(m[3]) !== size) throw new DataFetchError(`${shown(url)} is ${m[3]} bytes, not the ${size} the task names`);
      return 0;
    }
    if (length !== undefined && length !== size) throw new DataFetchError(`${shown(url)} is ${length} bytes, not the ${size} the task names`);
    return at;
  }

  /** One request, following redirects to http(s) addresses only; the response of a 200 or a 206. */
  private async request(url: string, method: 'GET' | 'HEAD', range: string | undefined, signal: AbortSignal): Promise<IncomingMessage> {
    let target = parseHttpUrl(url, url);
    for (let hops = 0; ; hops++) {
      const res = await once(target, method, range, signal, this.opts.idleTimeoutMs);
      const status = res.statusCode ?? 0;
      if (status === 200 || status === 206) return res;
      res.resume();
      if ([301, 302, 303, 307, 308].includes(status)) {
        if (hops >= this.opts.maxRedirects) throw new DataFetchError(`${shown(url)}: more than ${this.opts.maxRedirects} redirects`);
        const location = res.headers.location;
        if (!location) throw new DataFetchError(`${shown(url)}: a ${status} redirect without a Location`);
        target = parseHttpUrl(new URL(location, target).toString(), url);
        continue;
      }
      const what = `${shown(url)} answered ${status} ${res.statusMessage ?? ''}`.trim();
      if (status >= 500 || status === 408 || status === 429) throw new TransientFetchError(what);
      throw new DataFetchError(what);
    }
  }
}

function once(url: URL, method: string, range: string | undefined, signal: AbortSignal, idleTimeoutMs: number): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const get = url.protocol === 'https:' ? https.request : http.request;
    const req = get(url, { method, signal, timeout: idleTimeoutMs, headers: range ? { range } : {} }, (res) => {
      res.setTimeout(idleTimeoutMs, () => res.destroy(new TransientFetchError(`no bytes for ${idleTimeoutMs} ms`)));
      // A body cut by the network is retried; anything else from the stream surfaces as it is.
      res.on('error', () => undefined);
      resolve(res);
    });
    req.on('timeout', () => req.destroy(new TransientFetchError(`no answer for ${idleTimeoutMs} ms`)));
    req.on('error', (err) => reject(signal.aborted ? err : err instanceof TransientFetchError ? err : new TransientFetchError(errorMessage(err))));
    req.end();
  });
}

/** `location` as an http(s) URL; anything else (file:, ftp:, data:) is refused, naming the task's url. */
function parseHttpUrl(location: string, original: string): URL {
  let u: URL;
  try {
    u = new URL(location);
  } catch {
    throw new DataFetchError(`${shown(original)}: "${echoValue(location)}" is not an url`);
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') {
    throw new DataFetchError(`${shown(original)} redirects to a ${u.protocol.replace(/:$/, '')} address ("${echoValue(location)}"): only http and https are fetched`);
  }
  return u;
}

function finalError(url: string, err: unknown): unknown {
  return err instanceof HivemindError || !(err instanceof Error) || err.name === 'AbortError' ? err : new DataFetchError(`${shown(url)}: ${err.message} (gave up after retries)`);
}

function shown(url: string): string {
  return `the data set url "${echoValue(url)}"`;
}
