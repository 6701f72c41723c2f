// `hivemind result --extract`: how much a task's result may unpack to, and the unpacking itself.
// The archive comes from a node, so it is untrusted: a few hundred kB of gzip can hold gigabytes of
// zeros. It is capped by what the task was allowed to write, not by what the archive claims.
import { ArchiveCapError, HivemindError } from '../common/errors.js';
import { formatBytes } from '../common/units.js';
import { extractArchive } from '../archive/extract-archive.js';
import type { SafeTarStats } from '../archive/safe-tar.js';
import { RUNNER_DEFAULTS } from '../runtime/container-spec.js';
import type { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';

export interface ExtractCaps {
  maxBytes: number;
  maxEntries: number;
  /** Where maxBytes comes from, for the error message. */
  source: string;
}

/**
 * The task's max_output_bytes, or the worker's default (1 GiB) when the spec left it at 0;
 * `--max-extract` replaces it. Entries: a worker refuses an /output of more than 100 000.
 */
export function extractCapsFor(spec: Pick<TaskSpec, 'maxOutputBytes'> | undefined, maxExtract: number | undefined): ExtractCaps {
  const maxEntries = RUNNER_DEFAULTS.maxEntries;
  if (maxExtract !== undefined) return { maxBytes: maxExtract, maxEntries, source: '--max-extract' };
  const own = spec?.maxOutputBytes ?? 0;
  if (own > 0) return { maxBytes: own, maxEntries, source: "the task's max output" };
  return { maxBytes: RUNNER_DEFAULTS.maxOutputBytes, maxEntries, source: "a worker's default max output" };
}

/** The result unpacks to more than its cap; nothing was extracted. The CLI exits with 1. */
export class ResultOverCapError extends HivemindError {
  constructor(message: string) {
    super('RESULT_OVER_CAP', message);
  }
}

export async function extractResult(taskId: string, file: string, destDir: string, caps: ExtractCaps): Promise<SafeTarStats> {
  try {
    return await extractArchive(file, destDir, { maxBytes: caps.maxBytes, maxEntries: caps.maxEntries });
  } catch (err) {
    if (!(err instanceof ArchiveCapError)) throw err;
    const what = err.limit === 'bytes' ? `more than ${formatBytes(caps.maxBytes)} (${caps.source})` : `more than ${caps.maxEntries} entries (a worker's cap on /output)`;
    const raise =
      err.limit === 'bytes'
        ? `if you trust it, raise the cap with --max-extract SIZE (e.g. --max-extract ${Math.ceil((caps.maxBytes * 4) / 1024 ** 2)}m)`
        : 'a worker never sends that many: the archive was not made by a HiveMind worker';
    throw new ResultOverCapError(
      `task ${taskId}: the result unpacks to ${what}, stopped at "${err.entry}"; nothing was extracted into ${destDir} (the archive is kept at ${file}); ${raise}`,
    );
  }
}
