// The WAL checkpointer's thread (wal-checkpointer.ts): its own connection to master.db, copying the
// WAL back into the database file (and fsyncing it) here instead of in whichever main-thread commit
// crosses SQLite's automatic threshold. The master's connections run with wal_autocheckpoint = 0.
// better-sqlite3 in a worker thread is the same addon (the same SQLite copy) as the main thread's,
// so SQLite's in-process lock bookkeeping stays shared and correct.
import { statSync } from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';

export interface CheckpointWorkerData {
  path: string;
  /** A PASSIVE checkpoint at least this often while the WAL has frames. */
  everyMs: number;
  /** Checked this often: a WAL grown by growBytes since the last checkpoint is checkpointed at once. */
  pollMs: number;
  growBytes: number;
  /** The standalone executable's addon file (native-sqlite.ts); undefined from dist. */
  nativeBinding: string | undefined;
}

/** Main → worker. */
export type CheckpointRequest = { op: 'close' };
/** Worker → main. */
export type CheckpointReport =
  | { kind: 'ready' }
  /** `frames` copied back of the `log` frames the WAL holds (SQLite's wal_checkpoint counts). */
  | { kind: 'checkpoint'; ms: number; frames: number; log: number; truncated: boolean }
  | { kind: 'error'; message: string }
  | { kind: 'closed' };

const cfg = workerData as CheckpointWorkerData;
const port = parentPort!;
const post = (r: CheckpointReport) => port.postMessage(r);
const walFile = `${cfg.path}-wal`;

function walSize(): number {
  try {
    return statSync(walFile).size;
  } catch {
    return 0;
  }
}

let db: Database.Database;
try {
  db = new Database(cfg.path, cfg.nativeBinding ? { nativeBinding: cfg.nativeBinding } : {});
  // Persistent in the file, set again by the stores; here so a fresh file is WAL before they open it.
  db.pragma('journal_mode = WAL');
  db.pragma('busy_timeout = 0');
  db.pragma('wal_autocheckpoint = 0');
} catch (err) {
  post({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
  process.exit(1);
}

let lastAt = 0;
let sizeAtLast = 0;
/** The WAL's frames and how many were copied back, as of the last checkpoint (reported only when changed). */
let prev = '';

/**
 * PASSIVE while the master runs: it only copies frames back and moves the WAL's backfill mark,
 * never its header. A RESTART or TRUNCATE resets the header, and a main-thread transaction that
 * began by reading (better-sqlite3's deferred BEGIN) and then writes would fail at once with
 * SQLITE_BUSY ("database is locked", no busy handler for a stale snapshot); the bench hit exactly
 * that. The file is not cut while the master runs (open-master-sql.ts says why): the writer reuses
 * it from its start once it is all copied back. TRUNCATE only on close, when the stores have closed.
 */
function checkpoint(final: boolean): void {
  const start = performance.now();
  const [r] = db.pragma(final ? 'wal_checkpoint(TRUNCATE)' : 'wal_checkpoint(PASSIVE)') as { busy: number; log: number; checkpointed: number }[];
  lastAt = performance.now();
  sizeAtLast = walSize();
  const now = `${r!.log}/${r!.checkpointed}`;
  if (now !== prev) post({ kind: 'checkpoint', ms: lastAt - start, frames: r!.checkpointed, log: r!.log, truncated: final && r!.busy === 0 });
  prev = now;
}

const timer = setInterval(() => {
  try {
    const due = performance.now() - lastAt >= cfg.everyMs;
    if (due || walSize() - sizeAtLast >= cfg.growBytes) checkpoint(false);
  } catch (err) {
    post({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
  }
}, cfg.pollMs);

port.on('message', (m: CheckpointRequest) => {
  if (m.op !== 'close') return;
  clearInterval(timer);
  try {
    checkpoint(true);
  } catch (err) {
    post({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
  }
  try {
    db.close();
  } catch (err) {
    post({ kind: 'error', message: err instanceof Error ? err.message : String(err) });
  }
  post({ kind: 'closed' });
  port.close();
});

post({ kind: 'ready' });
