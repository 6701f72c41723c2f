// The rules of data sets shared by the master and the CLI (and, in part 2, the node): what a
// digest and a name look like, the bounds of an upload, and where an interrupted upload resumes.
// Pure; no I/O.
import { echoValue } from '../common/echo-value.js';
import { HivemindError } from '../common/errors.js';
import { CHUNK_SIZE } from './transport.js';

export const DATA_LIMITS = {
  /** Longest data set name. */
  maxNameChars: 128,
  /** Largest chunk of a PutData stream: twice what clients send (CHUNK_SIZE), far under the 1 MiB receive cap. */
  maxChunkBytes: 2 * CHUNK_SIZE,
  /** PutData streams open at once on a master (each holds a file handle and a running hash). */
  maxConcurrentUploads: 4,
  /** Interrupted uploads kept for a resume; past it the least recently written one is dropped. */
  maxPartials: 16,
  /** FetchData streams open at once. */
  maxConcurrentDownloads: 16,
  /** Tasks listed in a refused `rm`. */
  maxReferencesListed: 20,
} as const;

export const DIGEST_PREFIX = 'sha256:';
const HEX64 = /^[0-9a-f]{64}$/;
const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/** A data set request outside the rules: INVALID_ARGUMENT at the master, exit 1 in the CLI. */
export class InvalidDataError extends HivemindError {
  constructor(message: string) {
    super('INVALID_ARGUMENT', message);
  }
}

/**
 * The bytes of a put do not hash to its declared digest; the master discarded them. A client that
 * resumed a partial (whose earlier bytes may be what is wrong) can put again from 0.
 */
export class DigestMismatchError extends HivemindError {
  constructor(message: string) {
    super('DATA_DIGEST_MISMATCH', message);
  }
}

/** The 64 hex digits of a `sha256:<hex>` digest; throws naming `field` otherwise. */
export function parseDigest(value: string, field: string): string {
  if (!value.startsWith(DIGEST_PREFIX) || !HEX64.test(value.slice(DIGEST_PREFIX.length))) {
    throw new InvalidDataError(`${field} "${echoValue(value)}" is not a digest: expected "sha256:" and 64 lowercase hex digits`);
  }
  return value.slice(DIGEST_PREFIX.length);
}

export function formatDigest(hex: string): string {
  return DIGEST_PREFIX + hex;
}

/** Throws unless `name` is a valid data set name: 1..128 of [A-Za-z0-9._-], starting with a letter or digit. */
export function validateDataName(name: string, field = 'name'): string {
  if (name.length === 0 || name.length > DATA_LIMITS.maxNameChars || !NAME.test(name)) {
    throw new InvalidDataError(
      `${field} "${echoValue(name)}" is not a data set name: 1 to ${DATA_LIMITS.maxNameChars} characters of letters, digits, ".", "_" and "-", starting with a letter or digit`,
    );
  }
  return name;
}

export type DataRef = { digest: string } | { name: string };

/** A name or a `sha256:<hex>` digest, as `data get` and `data rm` (and part 2's `--data`) take them. */
export function parseDataRef(ref: string, field = 'ref'): DataRef {
  if (ref.startsWith(DIGEST_PREFIX)) return { digest: parseDigest(ref, field) };
  return { name: validateDataName(ref, field) };
}

/** What the master holds of an interrupted upload of a digest. */
export interface HeldPartial {
  /** Bytes in the partial file. */
  bytes: number;
  /** The size declared by the put that started it. */
  declaredSize: number;
}

/**
 * Where a put of `declaredSize` bytes resumes given the partial held for its digest: at the
 * partial's end when it was started for the same size and is not longer; otherwise the partial
 * is of no use (a different declared size means one of the two puts lied) and is discarded.
 */
export function resumeOffset(held: HeldPartial | undefined, declaredSize: number): { offset: number; discard: boolean } {
  if (!held) return { offset: 0, discard: false };
  if (held.declaredSize !== declaredSize || held.bytes > declaredSize) return { offset: 0, discard: true };
  return { offset: held.bytes, discard: false };
}
