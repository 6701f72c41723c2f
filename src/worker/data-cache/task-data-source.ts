// Where a task's data set comes from, for the node's data cache: an external url fetched over
// http(s), or the master (NodeService.DownloadData, which serves only a data set the asking
// attempt mounts, so the attempt travels with the request as the DataRef's `via`). A dropped
// master stream waits for the session to come back and goes on from where it stopped.
import type { Logger } from '../../common/logger.js';
import { backoffDelay, defaultBackoff } from '../../common/backoff.js';
import { sleep } from '../../common/sleep.js';
import { formatDigest } from '../../protocol/data-rules.js';
import { describeGrpcError, isRetryable } from '../../protocol/grpc-errors.js';
import type { OffsetChunk } from '../../transfer/resumable-download.js';
import type { MasterConnection } from '../master-connection.js';
import type { DataRef, DataSource } from './data-cache.js';
import type { HttpDataSource } from './http-data-source.js';

/** A DataRef's `via` for a task's data set: the attempt that mounts it, and its url if external. */
export interface TaskDataVia {
  taskId: string;
  attempt: number;
  url?: string;
}

export interface TaskDataSourceDeps {
  /** Waits for a live session to the master (MasterSession.withMaster). */
  withMaster<T>(signal: AbortSignal, what: string, fn: (conn: MasterConnection) => Promise<T>): Promise<T>;
  http: Pick<HttpDataSource, 'fetch'>;
  logger: Logger;
}

export function taskDataSource(deps: TaskDataSourceDeps): DataSource {
  return {
    fetch(ref: DataRef, offset: number, signal: AbortSignal): AsyncIterable<OffsetChunk> {
      const via = ref.via as TaskDataVia | undefined;
      if (!via) throw new Error(`data set sha256:${ref.digest} was asked for without its task`);
      if (via.url) return deps.http.fetch(via.url, ref.sizeBytes, offset, signal);
      return fromMaster(deps, via, ref, offset, signal);
    },
  };
}

async function* fromMaster(deps: TaskDataSourceDeps, via: TaskDataVia, ref: DataRef, offset: number, signal: AbortSignal): AsyncGenerator<OffsetChunk> {
  let at = offset;
  for (let failures = 0; ; ) {
    const conn = await deps.withMaster(signal, 'data download', async (c) => c);
    try {
      for await (const chunk of conn.downloadData(via.taskId, via.attempt, formatDigest(ref.digest), at, signal)) {
        yield chunk;
        at += chunk.data.length;
        failures = 0;
      }
      return;
    } catch (err) {
      if (signal.aborted || !isRetryable(err)) throw err;
      deps.logger.warn({ digest: ref.digest, taskId: via.taskId, at, err: describeGrpcError(err) }, 'data download interrupted; resuming');
      await sleep(backoffDelay(failures++, defaultBackoff), signal);
    }
  }
}
