// Keeps master.db's WAL from growing without end under a steady writer. SQLite starts the WAL over
// (writes from its start again) only when a write begins with every frame already copied back. The
// checkpointer's thread (wal-checkpointer.ts) copies frames back, but while the event loop commits
// all the time (a burst of submissions: ~16 MB of WAL a second at 10,000 nodes) frames arrive during
// every one of its checkpoints, so that moment never comes: the bench saw a 1.2 GB WAL. Here, once
// the WAL is big and the thread has copied nearly all of it, the main thread copies the rest itself
// with a PASSIVE checkpoint of its own connection: nothing can commit during it (the master's
// writers are on this thread), so the next write starts the WAL over. That costs one short block
// (a few hundred frames and two fsyncs) per `restartBytes` of WAL, instead of a file as large as
// the burst. The thread cannot do it: every checkpoint mode that waits for the last frames takes
// the write lock, and a main-thread transaction that has read and then writes fails at once on it.
import Database from 'better-sqlite3';
import { sqliteOpenOptions } from '../../common/native-sqlite.js';
import type { Logger } from '../../common/logger.js';
import { errorMessage } from '../../common/errors.js';

export interface WalRestartOptions {
  /** A WAL holding this much is worth starting over. Default 64 MiB. */
  restartBytes?: number;
  /**
   * The main thread copies at most this many frames itself (the block it costs). Default 256 (1 MiB
   * of 4 KiB pages): with 1,024, 5 of 53 catch-ups at 10,000 nodes took 50-100 ms while result
   * uploads kept the disk busy; with 256 none took over 50 ms, and the thread got that close as
   * often (52 catch-ups).
   */
  catchUpFrames?: number;
  /** A WAL this big is caught up whatever is left to copy (a writer faster than the disk). Default 512 MiB. */
  forceBytes?: number;
}

/** What the last checkpoint of the thread left: the WAL's frames and how many are copied back. */
export interface WalState {
  logFrames: number;
  copiedFrames: number;
  pageSize: number;
}

export type CatchUp = 'none' | 'catch-up' | 'forced';

/** The decision, pure: whether the main thread should copy the rest now. */
export function catchUpDue(s: WalState, o: Required<WalRestartOptions>): CatchUp {
  const bytes = s.logFrames * s.pageSize;
  if (bytes < o.restartBytes) return 'none';
  if (s.logFrames - s.copiedFrames <= o.catchUpFrames) return 'catch-up';
  return bytes >= o.forceBytes ? 'forced' : 'none';
}

export class WalRestart {
  private readonly o: Required<WalRestartOptions>;
  private pending = false;
  private closed = false;

  private constructor(
    private readonly db: Database.Database,
    readonly pageSize: number,
    private readonly log: Logger,
    private readonly onCatchUp: ((seconds: number, frames: number) => void) | undefined,
    options: WalRestartOptions,
  ) {
    this.o = { restartBytes: options.restartBytes ?? 64 * 1024 * 1024, catchUpFrames: options.catchUpFrames ?? 256, forceBytes: options.forceBytes ?? 512 * 1024 * 1024 };
  }

  /** A connection of the main thread's own, which only ever checkpoints (never waits on a lock). */
  static open(path: string, log: Logger, onCatchUp: ((seconds: number, frames: number) => void) | undefined, options: WalRestartOptions = {}): WalRestart {
    const db = new Database(path, sqliteOpenOptions());
    db.pragma('busy_timeout = 0');
    db.pragma('wal_autocheckpoint = 0');
    const pageSize = db.pragma('page_size', { simple: true }) as number;
    return new WalRestart(db, pageSize, log, onCatchUp, options);
  }

  /** Told after each of the thread's checkpoints; catches up on a later turn when it is due. */
  afterCheckpoint(logFrames: number, copiedFrames: number): void {
    if (this.pending || this.closed) return;
    const due = catchUpDue({ logFrames, copiedFrames, pageSize: this.pageSize }, this.o);
    if (due === 'none') return;
    if (due === 'forced') this.log.warn({ walMiB: Math.round((logFrames * this.pageSize) / 2 ** 20), left: logFrames - copiedFrames }, 'WAL outgrows its checkpoints (a slow disk?): the master copies the rest itself now');
    this.pending = true;
    // A later turn, never inside whatever transaction the message interrupted.
    setImmediate(() => {
      this.pending = false;
      if (!this.closed) this.catchUp();
    });
  }

  private catchUp(): void {
    const start = performance.now();
    try {
      const [r] = this.db.pragma('wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
      // busy: the thread was checkpointing at that instant; its next report tries again.
      if (r!.busy === 0) this.onCatchUp?.((performance.now() - start) / 1000, r!.checkpointed);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'WAL catch-up checkpoint failed; tried again after the next checkpoint');
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
