// Checkpoints master.db's WAL off the event loop. SQLite's automatic checkpoint runs inside the
// commit that pushes the WAL past 1,000 pages, with an fsync of the database file: at 10,000 nodes
// that was a 415 ms event-loop block in one updateTask (issue 21). With this running, the master's
// connections set wal_autocheckpoint = 0 (open-master-sql.ts, StoreLocation.externalCheckpoints)
// and their commits never sync (WAL, synchronous = NORMAL); a thread with its own connection
// (wal-checkpoint-worker.ts) runs PASSIVE checkpoints, which never block a writer or a reader
// (and never reset the WAL under a transaction: see the worker); once the WAL is big the main
// thread copies the last frames itself so that SQLite starts it over (wal-restart.ts).
// SQLite only: PostgreSQL checkpoints by itself.
import { Worker } from 'node:worker_threads';
import type { Logger } from '../../common/logger.js';
import { HivemindError, errorMessage } from '../../common/errors.js';
import { sqliteAddonFile } from '../../common/native-sqlite.js';
import { embeddedAsset, isStandalone } from '../../common/embedded-assets.js';
import type { CheckpointReport, CheckpointRequest, CheckpointWorkerData } from './wal-checkpoint-worker.js';
import { WalRestart, type WalRestartOptions } from './wal-restart.js';

/** The asset key scripts/build-exe.ts stores the bundled worker under (the executable has no dist/). */
export const CHECKPOINT_WORKER_ASSET = 'workers/wal-checkpoint-worker.cjs';

export interface WalCheckpointerOptions {
  /** A PASSIVE checkpoint at least this often. Default 1 000 ms. */
  everyMs?: number;
  /** How often the WAL's size is looked at. Default 100 ms. */
  pollMs?: number;
  /** A WAL grown by this much since the last checkpoint is checkpointed at once. Default 4 MiB (1,000 pages, SQLite's own threshold). */
  growBytes?: number;
  /** How long start() waits for the thread to open the database. Default 10 000 ms. */
  startTimeoutMs?: number;
  /** Told each checkpoint's duration (metrics). */
  onCheckpoint?: (seconds: number, frames: number) => void;
  /** When the main thread copies the WAL's last frames itself so SQLite starts it over (wal-restart.ts); false: never. */
  restart?: WalRestartOptions | false;
  /** Told each such catch-up's duration (metrics): it is an event-loop block. */
  onCatchUp?: (seconds: number, frames: number) => void;
}

export class CheckpointerStartError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('CHECKPOINTER_START', message, options);
  }
}

export class WalCheckpointer {
  private closing: Promise<void> | undefined;
  private exited = false;
  private restart: WalRestart | undefined;

  private constructor(
    private readonly worker: Worker,
    private readonly path: string,
    private readonly log: Logger,
  ) {}

  /**
   * Starts the thread and waits until its connection is open (creating the file in WAL mode if
   * needed). Throws CheckpointerStartError when it cannot: the caller then keeps SQLite's
   * automatic checkpoints.
   */
  static async start(path: string, log: Logger, options: WalCheckpointerOptions = {}): Promise<WalCheckpointer> {
    const data: CheckpointWorkerData = {
      path,
      everyMs: options.everyMs ?? 1000,
      pollMs: options.pollMs ?? 100,
      growBytes: options.growBytes ?? 4 * 1024 * 1024,
      nativeBinding: isStandalone() ? sqliteAddonFile() : undefined,
    };
    const worker = workerFor(data);
    const c = new WalCheckpointer(worker, path, log);
    await new Promise<void>((resolve, reject) => {
      // Only these listeners come off again: a Worker keeps listeners of its own (removeAllListeners
      // would stop its messages from being delivered).
      const done = () => {
        clearTimeout(timeout);
        worker.off('error', onError).off('exit', onExit).off('message', onMessage);
      };
      const fail = (why: string, cause?: unknown) => {
        done();
        void worker.terminate();
        reject(new CheckpointerStartError(`WAL checkpointer for ${path}: ${why}`, { cause }));
      };
      const startTimeoutMs = options.startTimeoutMs ?? 10_000;
      const timeout = setTimeout(() => fail(`its thread did not open the database within ${startTimeoutMs} ms`), startTimeoutMs);
      const onError = (err: Error) => fail(errorMessage(err), err);
      const onExit = (code: number) => fail(`its thread exited (${code}) before opening the database`);
      const onMessage = (m: CheckpointReport) => {
        if (m.kind === 'error') fail(m.message);
        if (m.kind !== 'ready') return;
        done();
        resolve();
      };
      worker.on('error', onError).on('exit', onExit).on('message', onMessage);
    });
    if (options.restart !== false) {
      try {
        c.restart = WalRestart.open(path, log, options.onCatchUp, options.restart);
      } catch (err) {
        await c.close();
        throw new CheckpointerStartError(`WAL checkpointer for ${path}: its main-thread connection did not open: ${errorMessage(err)}`, { cause: err });
      }
    }
    c.listen(options.onCheckpoint);
    return c;
  }

  private listen(onCheckpoint: WalCheckpointerOptions['onCheckpoint']): void {
    this.worker.on('message', (m: CheckpointReport) => {
      if (m.kind === 'checkpoint') {
        onCheckpoint?.(m.ms / 1000, m.frames);
        this.restart?.afterCheckpoint(m.log, m.frames);
        if (m.ms > 1000) this.log.warn({ ms: Math.round(m.ms), frames: m.frames }, 'WAL checkpoint slow (disk?)');
      } else if (m.kind === 'error') {
        this.log.warn({ err: m.message, path: this.path }, 'WAL checkpoint failed; retried next second');
      }
    });
    this.worker.on('error', (err) => this.log.error({ err: errorMessage(err), path: this.path }, 'WAL checkpointer thread failed'));
    this.worker.on('exit', () => {
      this.exited = true;
      if (!this.closing) this.log.error({ path: this.path }, 'WAL checkpointer thread ended: the WAL grows until the master restarts');
    });
    // The master's lifetime is its server's; this thread never keeps the process alive by itself.
    this.worker.unref();
  }

  /** Idempotent: a last TRUNCATE checkpoint, then the thread's connection closes and it ends. Call after the stores closed. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    this.restart?.close();
    if (this.exited) return;
    const ended = new Promise<void>((resolve) => this.worker.once('exit', () => resolve()));
    this.worker.postMessage({ op: 'close' } satisfies CheckpointRequest);
    // A stuck disk must not hang shutdown forever: the thread is cut after 10 s.
    const cut = setTimeout(() => void this.worker.terminate(), 10_000);
    await ended;
    clearTimeout(cut);
  }
}

function workerFor(data: CheckpointWorkerData): Worker {
  if (!isStandalone()) return new Worker(new URL('./wal-checkpoint-worker.js', import.meta.url), { workerData: data });
  const code = embeddedAsset(CHECKPOINT_WORKER_ASSET);
  if (!code) throw new CheckpointerStartError(`this executable carries no ${CHECKPOINT_WORKER_ASSET}: rebuild it with npm run build:exe`);
  return new Worker(code.toString('utf8'), { eval: true, workerData: data });
}
