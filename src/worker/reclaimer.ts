// Removes what no task owns any more: containers and volumes an earlier run left (a killed
// worker, Docker away at cleanup), and stray spool files. Single-flight, on a timer and on demand.
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { TaskExecutor } from './contracts.js';
import { spoolName } from './running-task.js';
import type { WorkerStore } from './store/worker-store.js';

export interface ReclaimerDeps {
  executor: Pick<TaskExecutor, 'reclaim'>;
  store: Pick<WorkerStore, 'pendingUploads'>;
  logger: Logger;
  spoolDir: string;
  intervalMs: number;
  /** The attempts running now: their containers and files stay. */
  running(): { taskId: string; attempt: number }[];
}

export class Reclaimer {
  private timer: NodeJS.Timeout | undefined;
  private reclaiming: Promise<void> | undefined;
  private stopped = false;
  /** Tasks whose containers or volumes stayed behind (Docker was away): reclaimed once it answers. */
  private readonly leftovers = new Set<string>();

  constructor(private readonly deps: ReclaimerDeps) {}

  start(): void {
    this.timer = setInterval(() => this.soon(), this.deps.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
  }

  /** A task ended leaving containers or volumes behind. */
  addLeftovers(taskId: string): void {
    this.leftovers.add(taskId);
  }

  /** Docker answers: reclaim what it could not remove before. */
  dockerAnswered(): void {
    if (this.leftovers.size > 0) this.soon();
  }

  /** Single-flight: removes containers, volumes and spool files no task owns. */
  soon(): void {
    if (this.stopped || this.reclaiming) return;
    this.reclaiming = this.reclaim()
      .catch((err: unknown) => this.deps.logger.warn({ err: errorMessage(err) }, 'removing leftovers failed; trying again later'))
      .finally(() => {
        this.reclaiming = undefined;
      });
  }

  private async reclaim(): Promise<void> {
    const pending = this.deps.store.pendingUploads();
    const running = this.deps.running();
    const keep = [...new Set([...running.map((t) => t.taskId), ...pending.map((r) => r.taskId)])];
    const removed = await this.deps.executor.reclaim(keep);
    for (const id of this.leftovers) if (!keep.includes(id)) this.leftovers.delete(id);
    if (removed.containers.length || removed.volumes.length) {
      this.deps.logger.info({ containers: removed.containers, volumes: removed.volumes }, 'removed containers and volumes no task owns (left by an earlier run)');
    }
    // Spool files: results still to upload and files of running tasks stay; the rest is debris.
    const keepFiles = new Set(pending.map((r) => path.basename(r.result!.path)));
    const activePrefixes = this.deps.running().flatMap((t) => [spoolName(t.taskId, t.attempt, ''), `${t.taskId}-${t.attempt}.`]);
    let names: string[];
    try {
      names = await readdir(this.deps.spoolDir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw err;
    }
    const stale = names.filter((n) => !keepFiles.has(n) && !activePrefixes.some((p) => n.startsWith(p)));
    for (const n of stale) await rm(path.join(this.deps.spoolDir, n), { force: true, recursive: true });
    if (stale.length) this.deps.logger.info({ files: stale }, 'removed spool files no task owns');
  }
}
