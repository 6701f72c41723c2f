// Collects a task's /output as its result: safe tar -> gzip -> sha256 -> a spool file, streamed
// end to end and held to the bound the master accepts for the output cap.
import { createWriteStream } from 'node:fs';
import { rename, rm, stat } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { UnsafeArchiveError } from '../common/errors.js';
import { BufferReclaimer } from '../common/buffer-reclaimer.js';
import { formatBytes } from '../common/units.js';
import { OutcomeKind } from '../protocol/gen/hivemind/v1/common.js';
import { resultArchiveBound } from '../protocol/result-bound.js';
import { safeTar, gzipStream } from '../archive/safe-tar.js';
import type { ContainerEngine } from './container-engine.js';
import { OUTPUT_DIR } from './container-spec.js';
import { OutcomeError } from './task-outcome.js';

/** A result archive in the spool dir. */
export interface CollectedResult {
  path: string;
  size: number;
  sha256: string;
}

/** Which attempt's /output, and the limits it is held to. */
export interface CollectRequest {
  taskId: string;
  attempt: number;
  /** Where result archives are written (`<taskId>-<attempt>.tar.gz`). */
  spoolDir: string;
  maxOutputBytes: number;
  maxEntries: number;
  signal: AbortSignal;
}

/** /output of container `id` -> safe tar -> gzip -> sha256 -> spool file, streaming end to end. */
export async function collectResult(engine: ContainerEngine, id: string, req: CollectRequest): Promise<CollectedResult> {
  const { maxOutputBytes } = req;
  const path = join(req.spoolDir, `${req.taskId}-${req.attempt}.tar.gz`);
  const partial = `${path}.partial`;
  const raw = await engine.getArchive(id, OUTPUT_DIR, req.signal);
  const filtered = safeTar(raw, {
    maxBytes: maxOutputBytes,
    maxEntries: req.maxEntries,
    symlinks: 'contained',
    stripComponents: 1, // Docker names entries "output/..."
    label: '/output',
  });
  const hash = createHash('sha256');
  const reclaimer = new BufferReclaimer();
  // The master refuses a larger archive (the same rule): say so here, before uploading it.
  const bound = resultArchiveBound(maxOutputBytes);
  let size = 0;
  const tap = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      if (size + chunk.length > bound) {
        cb(new UnsafeArchiveError(`/output packs into more than ${bound} bytes, the most a result may take for a ${formatBytes(maxOutputBytes)} output cap (the cap, 1/128 of it and 1 MiB for tar headers and gzip): many small files take 512 bytes each in the archive; pack them into one`));
        return;
      }
      hash.update(chunk);
      size += chunk.length;
      // the uncompressed side churns ~as many bytes again; count both
      reclaimer.add(chunk.length * 2);
      cb(null, chunk);
    },
  });
  try {
    await pipeline(filtered, gzipStream(), tap, createWriteStream(partial), { signal: req.signal });
    await rename(partial, path);
  } catch (err) {
    await rm(partial, { force: true });
    raw.destroy();
    if ((err as NodeJS.ErrnoException).code === 'ENOSPC') {
      // The node's disk, not the task: say so, and what to do.
      throw new OutcomeError(
        OutcomeKind.OUTCOME_KIND_INTERNAL_ERROR,
        `the worker's disk is full: the result archive did not fit in ${req.spoolDir} (${size} bytes written before the disk filled); free space there or lower --max-output`,
      );
    }
    throw err;
  }
  const st = await stat(path);
  if (st.size !== size) throw new Error(`result file ${path} has ${st.size} bytes, ${size} were written`);
  return { path, size, sha256: hash.digest('hex') };
}
