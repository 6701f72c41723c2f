// The gRPC handlers of DataService (what `hivemind data put | ls | get | rm` call): resumable,
// verified, bounded uploads of content-addressed data sets, listings, downloads and removal that
// is refused while a live task references the data set. Every call needs the admin token.
import type { sendUnaryData, ServerReadableStream, ServerWritableStream } from '@grpc/grpc-js';
import type { Clock } from '../common/clock.js';
import { errorMessage, NotFoundError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { formatBytes } from '../common/units.js';
import { DATA_LIMITS, formatDigest, InvalidDataError, parseDataRef, parseDigest, resumeOffset, validateDataName } from '../protocol/data-rules.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import { CHUNK_SIZE } from '../protocol/transport.js';
import { TaskState, type DataChunk } from '../protocol/gen/hivemind/v1/common.js';
import {
  type DataRef, type DataServiceServer, DataSetInfo, type FetchDataRequest, type ListDataRequest, type ListDataResponse,
  type PutDataHeader, type PutDataRequest, type RemoveDataResponse, type StatDataRequest, type StatDataResponse,
} from '../protocol/gen/hivemind/v1/data.js';
import { DataKind } from '../protocol/gen/hivemind/v1/common.js';
import { decodePageToken, pageSize, summarise, takePage } from './admin-listing.js';
import type { MasterAuth } from './auth.js';
import type { DataFiles } from './data-files.js';
import type { DataSetRow, DataStore } from './data-store.js';
import { callSignal, messagesOf, writeChunks } from './grpc-streams.js';
import { PreconditionError, ResourceExhaustedError } from './master-errors.js';
import { adminUnary } from './admin-unary.js';

export interface DataServiceDeps {
  store: DataStore;
  files: DataFiles;
  auth: MasterAuth;
  clock: Clock;
  log: Logger;
  /** Largest data set accepted; a put declaring more is refused at its header. */
  maxDataBytes: number;
}

export function toDataSetInfo(r: DataSetRow): DataSetInfo {
  return { sha256: formatDigest(r.sha256), size: r.size, kind: r.kind, names: r.names, createdAtMs: r.createdAt };
}

/** What a put did, for the log line and for tests that count the bytes a put sent. */
export interface PutOutcome {
  sha256: string;
  size: number;
  /** Where this put started (the bytes an earlier, interrupted put left). */
  offset: number;
  /** Bytes this put sent. */
  received: number;
  /** The data set was held already: nothing was sent. */
  alreadyHeld: boolean;
}

export class DataService {
  /** Digests with a PutData stream writing them now. */
  private readonly uploading = new Set<string>();
  private downloads = 0;

  constructor(private readonly d: DataServiceDeps) {}

  handlers(): DataServiceServer {
    return {
      statData: this.unary((r: StatDataRequest) => this.stat(r)),
      putData: (call, cb) => void this.putData(call, cb),
      listData: this.unary((r: ListDataRequest) => this.list(r)),
      getDataInfo: this.unary((r: DataRef) => toDataSetInfo(this.resolve(r.ref))),
      fetchData: (call) => void this.fetchData(call),
      removeData: this.unary((r: DataRef) => this.remove(r)),
    };
  }

  private unary<Req, Res>(fn: (req: Req) => Promise<Res> | Res) {
    return adminUnary(this.d.auth, fn);
  }

  /** The data set a name or digest refers to. */
  private resolve(ref: string): DataSetRow {
    const parsed = parseDataRef(ref);
    const hex = 'digest' in parsed ? parsed.digest : this.d.store.resolveName(parsed.name);
    const row = hex === undefined ? undefined : this.d.store.get(hex);
    if (!row) throw new NotFoundError(`no data set ${'name' in parsed ? `named "${parsed.name}"` : ref} at this master (see \`hivemind data ls\`)`);
    return row;
  }

  private checkSize(size: number, what: string): void {
    if (!Number.isSafeInteger(size) || size <= 0) throw new InvalidDataError(`${what}: size ${size} is not a positive number of bytes (an empty data set holds nothing)`);
    if (size > this.d.maxDataBytes) {
      throw new InvalidDataError(`${what}: size ${size} bytes (${formatBytes(size)}) is over this master's limit of ${formatBytes(this.d.maxDataBytes)} (maxDataBytes); nothing was stored`);
    }
  }

  /** The partial held for a digest, as resumeOffset sees it; a partial without its row is of unknown size. */
  private async held(hex: string): Promise<{ bytes: number; declaredSize: number } | undefined> {
    const bytes = await this.d.files.partialBytes(hex);
    if (bytes === undefined) return undefined;
    return { bytes, declaredSize: this.d.store.getUpload(hex)?.size ?? -1 };
  }

  private async stat(r: StatDataRequest): Promise<StatDataResponse> {
    const hex = parseDigest(r.sha256, 'sha256');
    const row = this.d.store.get(hex);
    if (row) return { complete: row.size === r.size, heldBytes: row.size === r.size ? row.size : 0 };
    this.checkSize(r.size, `stat ${r.sha256}`);
    return { complete: false, heldBytes: resumeOffset(await this.held(hex), r.size).offset };
  }

  private async putData(call: ServerReadableStream<PutDataRequest, DataSetInfo>, cb: sendUnaryData<DataSetInfo>): Promise<void> {
    let outcome: PutOutcome | undefined;
    let digest: string | undefined;
    try {
      this.d.auth.checkAdmin(call.metadata);
      const msgs = messagesOf<PutDataRequest>(call);
      const first = await msgs.next();
      const part = first.done ? undefined : first.value.part;
      if (part?.$case !== 'header') throw new InvalidDataError('a put must start with a header (sha256, size, kind)');
      const h = part.value;
      const hex = parseDigest(h.sha256, 'sha256');
      digest = h.sha256;
      if (h.kind !== DataKind.DATA_KIND_FILE && h.kind !== DataKind.DATA_KIND_DIR) throw new InvalidDataError(`kind ${h.kind} is not FILE (1) or DIR (2)`);
      const name = h.name === '' ? undefined : validateDataName(h.name);
      const existing = this.d.store.get(hex);
      if (existing) {
        if (existing.size !== h.size) throw new InvalidDataError(`put ${h.sha256}: this master holds that digest with ${existing.size} bytes, the header says ${h.size}`);
        for await (const m of msgs) {
          if (m.part?.$case === 'chunk') throw new InvalidDataError(`put ${h.sha256}: the master holds this data set already; send the header alone`);
          throw new InvalidDataError('a put has one header');
        }
        outcome = { sha256: hex, size: h.size, offset: h.size, received: 0, alreadyHeld: true };
      } else {
        this.checkSize(h.size, `put ${h.sha256}`);
        outcome = await this.receive(hex, h, msgs);
      }
      const now = this.d.clock.now();
      if (!existing) this.d.store.insert({ sha256: hex, size: h.size, kind: h.kind, createdAt: now });
      if (name) this.d.store.setName(name, hex, now);
      this.d.log.info({ ...outcome, sha256: formatDigest(hex), ...(name ? { name } : {}) }, outcome.alreadyHeld ? 'data put: held already, nothing sent' : 'data put: stored');
      cb(null, toDataSetInfo(this.d.store.get(hex)!));
    } catch (err) {
      this.d.log.info({ ...(digest ? { sha256: digest } : {}), err: errorMessage(err) }, 'data put refused or interrupted');
      cb(toServiceError(err));
    }
  }

  /** Receives the bytes of a put into its partial, resuming where an earlier put stopped. */
  private async receive(hex: string, h: PutDataHeader, msgs: AsyncGenerator<PutDataRequest>): Promise<PutOutcome> {
    const what = `put ${h.sha256}`;
    if (this.uploading.has(hex)) throw new PreconditionError(`${what}: another put of the same data set is under way; wait for it (the second put is then instant)`);
    if (this.uploading.size >= DATA_LIMITS.maxConcurrentUploads) {
      throw new ResourceExhaustedError(`${what}: ${this.uploading.size} puts are under way, the most this master takes at once; retry when one ends`);
    }
    this.uploading.add(hex);
    try {
      const { offset, discard } = resumeOffset(await this.held(hex), h.size);
      if (discard) await this.dropUpload(hex);
      if (h.offset !== offset) throw new PreconditionError(`${what}: the master holds ${offset} bytes of it, the header says offset ${h.offset}; ask StatData and resume there`);
      const free = await this.d.files.freeBytes();
      if (free < h.size - offset) {
        throw new ResourceExhaustedError(`${what}: ${formatBytes(h.size - offset)} still to store but the master's disk has ${formatBytes(free)} free; nothing more was stored`);
      }
      if (!this.d.store.getUpload(hex)) await this.makeRoomForPartial();
      this.d.store.putUpload({ sha256: hex, size: h.size, kind: h.kind, updatedAt: this.d.clock.now() });
      const writer = await this.d.files.openPartial(hex, offset);
      // A put that breaks the rules keeps nothing; one that is cut off (client gone, stream ended
      // early) keeps what it sent, for the next put of the same bytes to resume.
      let refused = false;
      const refuse = (message: string): never => {
        refused = true;
        throw new InvalidDataError(`${what}: ${message}; the partial upload was discarded`);
      };
      try {
        for await (const m of msgs) {
          if (m.part?.$case !== 'chunk') refuse('a second header in one put');
          const chunk = (m.part as { value: Buffer }).value;
          if (chunk.length === 0 || chunk.length > DATA_LIMITS.maxChunkBytes) refuse(`a chunk of ${chunk.length} bytes; chunks hold 1 to ${DATA_LIMITS.maxChunkBytes} bytes`);
          if (writer.written + chunk.length > h.size) refuse(`more bytes than the ${h.size} declared (the chunk would end at ${writer.written + chunk.length})`);
          await writer.write(chunk);
        }
      } finally {
        await writer.close();
        if (refused) await this.dropUpload(hex);
        else if (this.d.store.getUpload(hex)) this.d.store.putUpload({ sha256: hex, size: h.size, kind: h.kind, updatedAt: this.d.clock.now() });
      }
      if (writer.written < h.size) {
        throw new InvalidDataError(`${what}: the stream ended at byte ${writer.written} of ${h.size}; the master keeps what it got, put again to resume`);
      }
      try {
        await this.d.files.complete(hex, h.size);
      } finally {
        this.d.store.deleteUpload(hex);
      }
      return { sha256: hex, size: h.size, offset, received: writer.written - offset, alreadyHeld: false };
    } finally {
      this.uploading.delete(hex);
    }
  }

  private async dropUpload(hex: string): Promise<void> {
    await this.d.files.discardPartial(hex);
    this.d.store.deleteUpload(hex);
  }

  /** Keeps at most maxPartials interrupted uploads: the least recently written idle ones go first. */
  private async makeRoomForPartial(): Promise<void> {
    const idle = this.d.store.uploads().filter((u) => !this.uploading.has(u.sha256));
    let count = this.d.store.uploads().length;
    for (const u of idle) {
      if (count < DATA_LIMITS.maxPartials) return;
      this.d.log.warn({ sha256: formatDigest(u.sha256), size: u.size }, `data: ${count} interrupted puts held, the most kept; dropping the least recently written one`);
      await this.dropUpload(u.sha256);
      count--;
    }
  }

  private list(r: ListDataRequest): ListDataResponse {
    const page = takePage(this.d.store.iterate(decodePageToken(r.pageToken)), {
      limit: pageSize(r.limit),
      toItem: toDataSetInfo,
      sizeOf: (i) => DataSetInfo.encode(i).finish().length,
      summary: (i) => summarise(i).value,
      cursorOf: (row) => ({ at: row.createdAt, id: row.sha256 }),
    });
    return { dataSets: page.items, nextPageToken: page.next };
  }

  private async fetchData(call: ServerWritableStream<FetchDataRequest, DataChunk>): Promise<void> {
    const { signal, dispose } = callSignal(call);
    let counted = false;
    try {
      this.d.auth.checkAdmin(call.metadata);
      if (this.downloads >= DATA_LIMITS.maxConcurrentDownloads) {
        throw new ResourceExhaustedError(`${this.downloads} data downloads are open, the most this master serves at once; retry when one ends`);
      }
      this.downloads++;
      counted = true;
      const hex = parseDigest(call.request.sha256, 'sha256');
      const row = this.d.store.get(hex);
      if (!row) throw new NotFoundError(`no data set ${call.request.sha256} at this master`);
      const offset = call.request.offset;
      if (offset > row.size) throw new InvalidDataError(`offset ${offset} is past the end of the ${row.size}-byte data set ${call.request.sha256}`);
      if (offset < row.size) await writeChunks(call, this.d.files.read(hex, offset, CHUNK_SIZE), offset, signal);
      if (signal.aborted) return;
      if (!signal.aborted) call.end();
    } catch (err) {
      if (!signal.aborted) call.emit('error', toServiceError(err));
    } finally {
      if (counted) this.downloads--;
      dispose();
    }
  }

  private async remove(r: DataRef): Promise<RemoveDataResponse> {
    const row = this.resolve(r.ref);
    const res = this.d.store.remove(row.sha256, this.d.clock.now());
    if (!res) throw new NotFoundError(`no data set ${formatDigest(row.sha256)} at this master`);
    if ('references' in res) {
      const refs = res.references;
      const shown = refs.slice(0, DATA_LIMITS.maxReferencesListed).map((x) => `${x.taskId} (${TaskState[x.state].replace('TASK_STATE_', '').toLowerCase()}, at ${x.path})`);
      const more = refs.length > shown.length ? `, and ${refs.length - shown.length} more` : '';
      throw new PreconditionError(`data set ${formatDigest(row.sha256)} is used by ${refs.length} queued or running task(s): ${shown.join(', ')}${more}; cancel them or wait until they end`);
    }
    await this.d.files.remove(row.sha256);
    this.d.log.info({ sha256: formatDigest(row.sha256), names: row.names, size: row.size }, 'data set removed');
    return { sha256: formatDigest(row.sha256), names: row.names, size: row.size };
  }

  close(): void {
    this.d.store.close();
  }
}
