// The client of DataService the `hivemind data` commands use: a put that asks the master what it
// holds first (nothing is sent for a data set it has, an interrupted put resumes where the master's
// partial copy ends), listings, a resumable verified download, and removal.
import { rename, rm } from 'node:fs/promises';
import { type ClientWritableStream, type Metadata, type ServiceError } from '@grpc/grpc-js';
import { HivemindError } from '../common/errors.js';
import { DataServiceChunkClient } from '../protocol/chunk-codec.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { formatDigest } from '../protocol/data-rules.js';
import { hivemindCodeOf } from '../protocol/grpc-errors.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';
import { type DataServiceClient, type DataSetInfo, ListDataRequest, type ListDataResponse, type PutDataRequest,
  type RemoveDataResponse, type StatDataResponse,
} from '../protocol/gen/hivemind/v1/data.js';
import { type DataKind } from '../protocol/gen/hivemind/v1/common.js';
import { callMessages } from '../transfer/call-messages.js';
import { sendWithTrailer } from '../transfer/checksum-upload.js';
import { downloadResumable, type Downloaded } from '../transfer/resumable-download.js';
import { MasterCallError } from './admin-client.js';

/** Raised by fetch when the downloaded bytes do not match the data set's digest. */
export class DataMismatchError extends HivemindError {
  constructor(message: string) {
    super('DATA_MISMATCH', message);
  }
}

export interface PutSource {
  /** The bytes to put: the file itself, or the canonical tar of a directory. */
  file: string;
  /** sha256 (hex) and size of `file`, measured by the caller. */
  sha256: string;
  size: number;
  kind: DataKind;
  name?: string;
  signal?: AbortSignal;
  onProgress?(sent: number, total: number): void;
}

export interface PutResult {
  info: DataSetInfo;
  /** The master held the whole data set already: no byte was sent. */
  alreadyHeld: boolean;
  /** Where this put started: the bytes an earlier, interrupted put left at the master. */
  resumedFrom: number;
  /** A resumed put failed the digest check and was sent again from 0. */
  restartedAfterMismatch: boolean;
}

/** A resumed put whose bytes failed the master's digest check (put() starts over once). */
class ResumedMismatch extends Error {
  constructor(readonly original: unknown) {
    super('a resumed put failed the digest check');
  }
}

export class DataClient {
  private closed = false;

  private constructor(private readonly client: DataServiceClient, private readonly md: Metadata) {}

  static connect(address: string, adminToken: string, transport: Transport = insecureTransport): DataClient {
    return new DataClient(new DataServiceChunkClient(address, transport.clientCredentials(), channelOptions), bearerMetadata(adminToken));
  }

  private unary<Req, Res>(what: string, method: (req: Req, md: Metadata, cb: (err: ServiceError | null, res: Res) => void) => unknown, req: Req): Promise<Res> {
    return new Promise((resolve, reject) => {
      method.call(this.client, req, this.md, (err, res) => (err ? reject(new MasterCallError(what, err)) : resolve(res)));
    });
  }

  stat(sha256: string, size: number): Promise<StatDataResponse> {
    return this.unary('data stat', this.client.statData, { sha256: formatDigest(sha256), size });
  }

  /**
   * Puts a data set: asks what the master holds, then sends only what it lacks. When a resumed put
   * fails the master's digest check, the partial it resumed (bytes of an earlier put, possibly not
   * these) was the fault: the master discarded it, and the put runs once more from 0.
   */
  async put(src: PutSource): Promise<PutResult> {
    try {
      return await this.putOnce(src);
    } catch (err) {
      if (!(err instanceof ResumedMismatch)) throw err;
      const again = await this.putOnce(src);
      return { ...again, restartedAfterMismatch: true };
    }
  }

  private async putOnce(src: PutSource): Promise<PutResult> {
    const digest = formatDigest(src.sha256);
    const held = await this.stat(src.sha256, src.size);
    const offset = held.complete ? src.size : held.heldBytes;
    let call: ClientWritableStream<PutDataRequest> | undefined;
    const response = new Promise<DataSetInfo>((resolve, reject) => {
      call = this.client.putData(this.md, (err, res) => (err ? reject(new MasterCallError('data put', err)) : resolve(res)));
    });
    response.catch(() => undefined);
    // Where the send starts (past what the master holds), so a progress line's rate counts only what moves now.
    src.onProgress?.(offset, src.size);
    const onAbort = () => call!.cancel();
    src.signal?.addEventListener('abort', onAbort, { once: true });
    try {
      const header: PutDataRequest = {
        part: { $case: 'header', value: { sha256: digest, size: src.size, kind: src.kind, name: src.name ?? '', offset } },
      };
      await sendWithTrailer(call!, header, held.complete ? undefined : {
        file: src.file,
        from: offset,
        size: src.size,
        sha256: src.sha256,
        shrank: (pos) => new HivemindError('INPUT_CHANGED', `data put: ${src.file} shrank to ${pos} bytes while it was sent`),
        ...(src.signal ? { signal: src.signal } : {}),
        ...(src.onProgress ? { onProgress: src.onProgress } : {}),
      });
    } catch (err) {
      call!.cancel();
      const remote = await Promise.race([response.then(() => undefined, (e: unknown) => e), new Promise((r) => setTimeout(r, 200, undefined))]);
      if (remote) throw remote;
      throw err;
    } finally {
      src.signal?.removeEventListener('abort', onAbort);
    }
    try {
      return { info: await response, alreadyHeld: held.complete, resumedFrom: held.complete ? 0 : offset, restartedAfterMismatch: false };
    } catch (err) {
      if (offset > 0 && !held.complete && hivemindCodeOf((err as MasterCallError).cause) === 'DATA_DIGEST_MISMATCH') throw new ResumedMismatch(err);
      throw err;
    }
  }

  listPage(req: Partial<ListDataRequest> = {}): Promise<ListDataResponse> {
    return this.unary<ListDataRequest, ListDataResponse>('data ls', this.client.listData, ListDataRequest.fromPartial(req));
  }

  /** Every data set, newest first, page after page. */
  async list(): Promise<DataSetInfo[]> {
    const out: DataSetInfo[] = [];
    const seen = new Set<string>();
    let pageToken = '';
    for (;;) {
      const r = await this.listPage({ limit: 1000, pageToken });
      out.push(...r.dataSets);
      if (!r.nextPageToken || r.dataSets.length === 0 || seen.has(r.nextPageToken)) return out;
      seen.add(r.nextPageToken);
      pageToken = r.nextPageToken;
    }
  }

  info(ref: string): Promise<DataSetInfo> {
    return this.unary('data info', this.client.getDataInfo, { ref });
  }

  /**
   * Downloads a data set to `destPath` through `<destPath>.partial` (an interrupted get resumes
   * from its size) and checks the size and sha256 against the digest before renaming it in place.
   */
  async fetch(ref: string, destPath: string, signal?: AbortSignal, onProgress?: (done: number, total: number | undefined) => void): Promise<{ info: DataSetInfo; got: Downloaded }> {
    const info = await this.info(ref);
    const partial = `${destPath}.partial`;
    const what = `data get ${info.sha256}`;
    const got = await downloadResumable({
      file: partial,
      size: info.size,
      fetch: (offset) => this.iterate(what, this.client.fetchData({ sha256: info.sha256, offset }, this.md), signal),
      outOfOrder: (expected, at) => new DataMismatchError(`${what}: expected a chunk at offset ${expected}, got ${at}`),
      cannotWrite: (err) => new MasterCallError(what, new Error(`cannot write ${partial}: ${err.code === 'ENOENT' ? 'its directory does not exist' : err.message}`)),
      ...(onProgress ? { onProgress } : {}),
    });
    if (got.size !== info.size || formatDigest(got.sha256) !== info.sha256) {
      await rm(partial, { force: true });
      throw new DataMismatchError(`${what}: got ${got.size} bytes with ${formatDigest(got.sha256)}, expected ${info.size} bytes; the partial file was deleted, get again`);
    }
    await rename(partial, destPath);
    return { info, got };
  }

  private async *iterate<T>(what: string, stream: Parameters<typeof callMessages<T>>[0], signal?: AbortSignal): AsyncGenerator<T> {
    try {
      yield* callMessages(stream, signal);
    } catch (err) {
      throw new MasterCallError(what, err);
    }
  }

  remove(ref: string): Promise<RemoveDataResponse> {
    return this.unary('data rm', this.client.removeData, { ref });
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.client.close();
  }
}
