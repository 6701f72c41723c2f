// Wire codec for the messages that carry archive bytes (result uploads, input submissions and
// downloads). The generated ts-proto codec copies a chunk three times to encode it (writer growth,
// finish(), Buffer.from) and once more to decode it; at tunnel speeds those copies and the garbage
// they leave cost a quarter of the upload throughput on a 2-core node. These codecs produce the
// same bytes as the generated ones with one allocation, and decode a chunk as a view of the
// received buffer (grpc-js hands each message over in a buffer of its own). Any message that is
// not a plain chunk goes through the generated codec.
import type { FileHandle } from 'node:fs/promises';
import { makeGenericClientConstructor, type ServiceDefinition } from '@grpc/grpc-js';
import { AdminServiceClient, AdminServiceService, SubmitTaskRequest } from './gen/hivemind/v1/admin.js';
import { DataChunk } from './gen/hivemind/v1/common.js';
import { DataServiceClient, DataServiceService, PutDataRequest } from './gen/hivemind/v1/data.js';
import { NodeServiceClient, NodeServiceService, UploadResultRequest } from './gen/hivemind/v1/node.js';

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 0x80);
    size++;
  }
  return size;
}

function putVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n % 0x80) | 0x80;
    n = Math.floor(n / 0x80);
  }
  out[at++] = n;
  return at;
}

/** Reads a varint at `at`; undefined when it runs past the end or beyond 2^53. */
function getVarint(buf: Uint8Array, at: number): { value: number; next: number } | undefined {
  let value = 0;
  let scale = 1;
  for (let i = at; i < buf.length && i < at + 8; i++) {
    const b = buf[i]!;
    value += (b & 0x7f) * scale;
    if (b < 0x80) return { value, next: i + 1 };
    scale *= 0x80;
  }
  return undefined;
}

/** Encodes `[varint field]` (skipped when 0, as proto3 does) followed by `bytes field`. */
export function encodeBytesMessage(bytesField: number, data: Uint8Array, varintField?: { field: number; value: number }): Buffer {
  const hasVarint = varintField !== undefined && varintField.value !== 0;
  const varintPart = hasVarint ? varintSize((varintField.field << 3) | WIRE_VARINT) + varintSize(varintField.value) : 0;
  const bytesTag = (bytesField << 3) | WIRE_LEN;
  const out = Buffer.allocUnsafe(varintPart + varintSize(bytesTag) + varintSize(data.length) + data.length);
  let at = 0;
  if (hasVarint) {
    at = putVarint(out, at, (varintField.field << 3) | WIRE_VARINT);
    at = putVarint(out, at, varintField.value);
  }
  at = putVarint(out, at, bytesTag);
  at = putVarint(out, at, data.length);
  out.set(data, at);
  return out;
}

/**
 * Decodes a message laid out as `encodeBytesMessage` writes it: the bytes field is returned as a
 * view of `buf`. Returns undefined for any other layout (the caller falls back to the full codec).
 */
export function decodeBytesMessage(buf: Buffer, bytesField: number, varintField?: number): { data: Buffer; varint: number } | undefined {
  let at = 0;
  let varint = 0;
  if (varintField !== undefined && buf[0] === ((varintField << 3) | WIRE_VARINT)) {
    const v = getVarint(buf, 1);
    if (!v) return undefined;
    varint = v.value;
    at = v.next;
  }
  if (buf[at] !== ((bytesField << 3) | WIRE_LEN)) return undefined;
  const len = getVarint(buf, at + 1);
  if (!len || len.next + len.value !== buf.length) return undefined;
  return { data: buf.subarray(len.next), varint };
}

const CHUNK_FIELD = 2;
const PRE_ENCODED = Symbol('hivemind.preEncoded');

/** A chunk message of UploadResultRequest, SubmitTaskRequest or PutDataRequest (all carry it as `bytes chunk = 2`). */
export interface ChunkMessage {
  part: { $case: 'chunk'; value: Buffer };
}

/** An upload chunk whose wire bytes were built as it was read (see readUploadChunk). */
type PreEncodedUpload = (UploadResultRequest | SubmitTaskRequest | PutDataRequest) & { [PRE_ENCODED]?: Buffer };

/**
 * Reads up to `max` bytes of `fh` at `position` straight into the wire encoding of an upload
 * chunk (UploadResult or SubmitTask): no intermediate buffer, no copy when the message is
 * serialized. Returns undefined at the end of the file.
 */
export async function readUploadChunk(fh: FileHandle, position: number, max: number): Promise<{ message: ChunkMessage; bytes: number } | undefined> {
  const tag = (CHUNK_FIELD << 3) | WIRE_LEN;
  const room = varintSize(tag) + varintSize(max);
  const out = Buffer.allocUnsafe(room + max);
  const { bytesRead } = await fh.read(out, room, max, position);
  if (bytesRead === 0) return undefined;
  // The header sits right before the data; a short last read may need fewer length bytes.
  const start = room - varintSize(tag) - varintSize(bytesRead);
  putVarint(out, putVarint(out, start, tag), bytesRead);
  const data = out.subarray(room, room + bytesRead);
  const message: ChunkMessage & PreEncodedUpload = { part: { $case: 'chunk', value: data } };
  message[PRE_ENCODED] = out.subarray(start, room + bytesRead);
  return { message, bytes: bytesRead };
} // `bytes chunk = 2` in UploadResultRequest and SubmitTaskRequest; `bytes data = 2` in DataChunk

function serializeUpload(value: PreEncodedUpload & UploadResultRequest): Buffer {
  const pre = value[PRE_ENCODED];
  if (pre) return pre;
  if (value.part?.$case === 'chunk') return encodeBytesMessage(CHUNK_FIELD, value.part.value);
  return Buffer.from(UploadResultRequest.encode(value).finish());
}
function deserializeUpload(buf: Buffer): UploadResultRequest {
  const fast = decodeBytesMessage(buf, CHUNK_FIELD);
  return fast ? { part: { $case: 'chunk', value: fast.data } } : UploadResultRequest.decode(buf);
}
function serializeSubmit(value: PreEncodedUpload & SubmitTaskRequest): Buffer {
  const pre = value[PRE_ENCODED];
  if (pre) return pre;
  if (value.part?.$case === 'chunk') return encodeBytesMessage(CHUNK_FIELD, value.part.value);
  return Buffer.from(SubmitTaskRequest.encode(value).finish());
}
function deserializeSubmit(buf: Buffer): SubmitTaskRequest {
  const fast = decodeBytesMessage(buf, CHUNK_FIELD);
  return fast ? { part: { $case: 'chunk', value: fast.data } } : SubmitTaskRequest.decode(buf);
}
function serializePut(value: PreEncodedUpload & PutDataRequest): Buffer {
  const pre = value[PRE_ENCODED];
  if (pre) return pre;
  if (value.part?.$case === 'chunk') return encodeBytesMessage(CHUNK_FIELD, value.part.value);
  return Buffer.from(PutDataRequest.encode(value).finish());
}
function deserializePut(buf: Buffer): PutDataRequest {
  const fast = decodeBytesMessage(buf, CHUNK_FIELD);
  return fast ? { part: { $case: 'chunk', value: fast.data } } : PutDataRequest.decode(buf);
}
function serializeDataChunk(value: DataChunk): Buffer {
  // proto3 leaves an empty non-oneof `bytes` field out; the generated codec writes that layout.
  if (value.data.length === 0) return Buffer.from(DataChunk.encode(value).finish());
  return encodeBytesMessage(CHUNK_FIELD, value.data, { field: 1, value: value.offset });
}
function deserializeDataChunk(buf: Buffer): DataChunk {
  const fast = decodeBytesMessage(buf, CHUNK_FIELD, 1);
  return fast ? { offset: fast.varint, data: fast.data } : DataChunk.decode(buf);
}

/** NodeService with the chunk codecs; use it for both the server and the client. */
export const NodeServiceDefinition = {
  ...NodeServiceService,
  uploadResult: { ...NodeServiceService.uploadResult, requestSerialize: serializeUpload, requestDeserialize: deserializeUpload },
  downloadInput: { ...NodeServiceService.downloadInput, responseSerialize: serializeDataChunk, responseDeserialize: deserializeDataChunk },
  downloadData: { ...NodeServiceService.downloadData, responseSerialize: serializeDataChunk, responseDeserialize: deserializeDataChunk },
} satisfies typeof NodeServiceService;

/** AdminService with the chunk codecs; use it for both the server and the client. */
export const AdminServiceDefinition = {
  ...AdminServiceService,
  submitTask: { ...AdminServiceService.submitTask, requestSerialize: serializeSubmit, requestDeserialize: deserializeSubmit },
} satisfies typeof AdminServiceService;

/** DataService with the chunk codecs; use it for both the server and the client. */
export const DataServiceDefinition = {
  ...DataServiceService,
  putData: { ...DataServiceService.putData, requestSerialize: serializePut, requestDeserialize: deserializePut },
  fetchData: { ...DataServiceService.fetchData, responseSerialize: serializeDataChunk, responseDeserialize: deserializeDataChunk },
} satisfies typeof DataServiceService;

export const DataServiceChunkClient = makeGenericClientConstructor(
  DataServiceDefinition as ServiceDefinition,
  'hivemind.v1.DataService',
) as unknown as new (...args: ConstructorParameters<typeof DataServiceClient>) => DataServiceClient;

export const NodeServiceChunkClient = makeGenericClientConstructor(
  NodeServiceDefinition as ServiceDefinition,
  'hivemind.v1.NodeService',
) as unknown as new (...args: ConstructorParameters<typeof NodeServiceClient>) => NodeServiceClient;

export const AdminServiceChunkClient = makeGenericClientConstructor(
  AdminServiceDefinition as ServiceDefinition,
  'hivemind.v1.AdminService',
) as unknown as new (...args: ConstructorParameters<typeof AdminServiceClient>) => AdminServiceClient;
