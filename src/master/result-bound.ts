// How large a result upload the master accepts for a task: a pure bound on the compressed
// archive, derived from the task's cap on its uncompressed /output tree (docs/protocol.md,
// "Chunked, resumable transfers"). Nothing past it is ever stored.
import { SPEC_LIMITS } from '../protocol/task-spec-rules.js';

/**
 * The node's cap on entries in /output (RUNNER_DEFAULTS.maxEntries, not configurable on the node;
 * a unit test keeps the two equal). An archive with more is refused by the node itself.
 */
export const MAX_OUTPUT_ENTRIES = 100_000;

/** Tar bytes per entry besides its content: a 512-byte header and up to 511 bytes of padding. */
export const TAR_BYTES_PER_ENTRY = 1024;

/** The end-of-archive marker (two zero blocks), rounded up to one 10 KiB tar record. */
export const TAR_END_BYTES = 10 * 1024;

/**
 * Gzip's worst case is storing incompressible data: 5 bytes per stored block of at most 64 KiB,
 * plus an 18-byte header and trailer. One byte per KiB and a 1 KiB constant bound it generously.
 */
export function gzipBound(bytes: number): number {
  return bytes + Math.ceil(bytes / 1024) + 1024;
}

/**
 * The most bytes an honest node's result archive for a task with this `max_output_bytes` can
 * have: the content cap plus every entry's header and padding, gzipped without compressing.
 * When the task leaves its cap at 0 the node's own default applies, which the master cannot
 * know, so the largest cap a submission may ask for (SPEC_LIMITS.maxOutputBytes) stands in.
 */
export function resultUploadBound(maxOutputBytes: number): number {
  const content = maxOutputBytes > 0 ? maxOutputBytes : SPEC_LIMITS.maxOutputBytes;
  return gzipBound(content + MAX_OUTPUT_ENTRIES * TAR_BYTES_PER_ENTRY + TAR_END_BYTES);
}
