// A task attempt's data sets: its spec's mounts read again on the node (the master is not
// trusted), a lease on each from the data cache (downloading what is missing, once however many
// tasks wait), their progress summed for the task, and the host paths the runner mounts
// read-only. The leases are the attempt's (holder "taskId:attempt") until it ends, any way.
import { posix } from 'node:path';
import { echoValue } from '../common/echo-value.js';
import { HivemindError, InvalidTaskError } from '../common/errors.js';
import { DataKind, type DataMount } from '../protocol/gen/hivemind/v1/common.js';
import { DIGEST_PREFIX } from '../protocol/data-rules.js';
import type { TaskAssignment } from '../protocol/gen/hivemind/v1/node.js';
import type { DataBind } from './contracts.js';
import type { DataLease, DataProgress, DataRef } from './data-cache/data-cache.js';
import { DataCorruptError } from './data-cache/cache-errors.js';
import { DataFetchError } from './data-cache/http-data-source.js';
import type { TaskDataVia } from './data-cache/task-data-source.js';

const HEX64 = /^[0-9a-f]{64}$/;


/** One mount of the spec, as the cache and the runner need it. */
export interface TaskDataNeed {
  ref: DataRef;
  containerPath: string;
  /** An external data set whose size the spec left out (0): asked of its server first. */
  sizeUnknown: boolean;
}

export interface TaskDataDeps {
  acquire(ref: DataRef, holder: string, signal: AbortSignal, onProgress?: (p: DataProgress) => void): Promise<DataLease>;
  /** The size an url announces (HEAD), for an external data set named without one. */
  urlSize(url: string, signal: AbortSignal): Promise<number>;
}

/** The cache's holder name of an attempt's leases. */
export function dataHolder(taskId: string, attempt: number): string {
  return `${taskId}:${attempt}`;
}

/**
 * The spec's mounts as the cache's refs. The spec rules (checkTaskSpec) were applied already; this
 * re-reads what the node's own safety depends on (a digest becomes a file name, a path a bind
 * mount) and throws InvalidTaskError naming the field otherwise.
 */
export function dataNeeds(taskId: string, attempt: number, mounts: readonly DataMount[]): TaskDataNeed[] {
  return mounts.map((m, i) => {
    const at = `spec.data[${i}]`;
    const hex = m.sha256.startsWith(DIGEST_PREFIX) ? m.sha256.slice(DIGEST_PREFIX.length) : '';
    if (!HEX64.test(hex)) throw new InvalidTaskError(`${at}.sha256 "${echoValue(m.sha256)}" is not "sha256:" and 64 lowercase hex digits`);
    if (!m.path.startsWith('/') || m.path === '/' || posix.normalize(m.path) !== m.path || /[\u0000-\u001f\u007f:,]/.test(m.path)) {
      throw new InvalidTaskError(`${at}.path "${echoValue(m.path)}" is not a normalised absolute path below "/" (without ":" or ",")`);
    }
    if (!Number.isSafeInteger(m.size) || m.size < 0) throw new InvalidTaskError(`${at}.size ${String(m.size)} is not a byte count`);
    const kind = m.kind === DataKind.DATA_KIND_DIR ? 'dir' : m.kind === DataKind.DATA_KIND_FILE || (m.url && m.kind === DataKind.DATA_KIND_UNSPECIFIED) ? 'file' : undefined;
    if (!kind) throw new InvalidTaskError(`${at}.kind is not a file or a directory (the master fills it in from its data store)`);
    const via: TaskDataVia = { taskId, attempt, ...(m.url ? { url: m.url } : {}) };
    return { ref: { digest: hex, kind, sizeBytes: m.size, via }, containerPath: m.path, sizeUnknown: Boolean(m.url) && m.size === 0 };
  });
}

/**
 * Why a node refuses an assignment for its data sets (their mounts break the node's rules, it has
 * no data cache, or they cannot fit it: the master placed it on old news), so that the master
 * places it elsewhere; undefined when they can be had here.
 */
export function dataRefusal(a: Pick<TaskAssignment, 'taskId' | 'attempt' | 'spec'>, cache: { wouldNotFit(refs: readonly DataRef[]): string | undefined } | undefined): string | undefined {
  let needs;
  try {
    needs = dataNeeds(a.taskId, a.attempt, a.spec?.data ?? []);
  } catch (err) {
    if (err instanceof InvalidTaskError) return `invalid task spec: ${err.message}`;
    throw err;
  }
  if (needs.length === 0) return undefined;
  if (!cache) return new NoDataCacheError().message;
  const problem = cache.wouldNotFit(needs.map((n) => n.ref));
  return problem ? `data cache full: ${problem}` : undefined;
}

/** A data set that cannot be had (corrupt, refused by its server): the task's input is what is wrong. */
export function isDataRejection(err: unknown): boolean {
  return err instanceof DataCorruptError || err instanceof DataFetchError;
}

/** The leases of one attempt: acquired together, released together (idempotent). */
export class TaskData {
  private constructor(
    readonly binds: DataBind[],
    private readonly leases: DataLease[],
  ) {}

  /**
   * Leases every data set of the attempt, fetching what is missing (in parallel); `onProgress`
   * gets the bytes of all of them together, cached ones counting as received. On any failure the
   * leases already taken are released and the error names the data set.
   */
  static async acquire(
    holder: string,
    needs: readonly TaskDataNeed[],
    deps: TaskDataDeps,
    signal: AbortSignal,
    onProgress: (p: DataProgress) => void,
  ): Promise<TaskData> {
    const refs = await Promise.all(needs.map(async (n) => (n.sizeUnknown ? { ...n.ref, sizeBytes: await deps.urlSize((n.ref.via as TaskDataVia).url!, signal) } : n.ref)));
    const total = refs.reduce((s, r) => s + r.sizeBytes, 0);
    const received = refs.map(() => 0);
    const report = () => onProgress({ receivedBytes: received.reduce((a, b) => a + b, 0), totalBytes: total });
    const leases: (DataLease | undefined)[] = refs.map(() => undefined);
    const results = await Promise.allSettled(
      refs.map(async (ref, i) => {
        leases[i] = await deps.acquire(ref, holder, signal, (p) => {
          received[i] = p.receivedBytes;
          report();
        });
        received[i] = ref.sizeBytes;
        report();
      }),
    );
    const failedAt = results.findIndex((r) => r.status === 'rejected');
    const held = leases.filter((l): l is DataLease => l !== undefined);
    if (failedAt >= 0) {
      held.forEach((l) => l.release());
      throw namingDataSet((results[failedAt] as PromiseRejectedResult).reason, refs[failedAt]!.digest);
    }
    return new TaskData(
      held.map((l, i) => ({ hostPath: l.path, containerPath: needs[i]!.containerPath })),
      held,
    );
  }

  release(): void {
    for (const l of this.leases.splice(0)) l.release();
  }
}

/** The error, its message naming the data set (the url source's errors name only the url). */
function namingDataSet(err: unknown, digest: string): unknown {
  if (err instanceof HivemindError && !err.message.includes(digest)) err.message = `data set sha256:${digest}: ${err.message}`;
  return err;
}

/** The worker runs without a data cache: a task mounting data sets cannot run here. */
export class NoDataCacheError extends HivemindError {
  constructor() {
    super('NO_DATA_CACHE', 'this node runs without a data cache: it cannot run tasks that mount data sets');
  }
}
