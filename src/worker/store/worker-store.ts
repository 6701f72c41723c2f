// The worker's durable memory in one SQLite file (WAL): task history, state transitions,
// resource samples and the outbox of task updates not yet acknowledged by the master.
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import type { Database } from 'better-sqlite3';
import { TaskProgress, type ResourceReport, type TaskOutcome } from '../../protocol/gen/hivemind/v1/common.js';
import { TaskState, taskStateFromJSON, taskStateToJSON } from '../../protocol/gen/hivemind/v1/common.js';
import { TaskAssignment, type TaskUpdate } from '../../protocol/gen/hivemind/v1/node.js';
import { stringifyProto } from '../../protocol/proto-json.js';
import { openSqlite } from '../../common/sqlite-migrate.js';
import type { ContributionPoint, HistoryFilter, HistoryPage, PulledImageRecord, TaskEventRecord, TaskRecord } from '../contracts.js';
import { WORKER_SCHEMA } from './migrations.js';
import type { ExecSessionEnd, ExecSessionRecord } from '../exec-sessions.js';

export type { HistoryFilter, HistoryPage, PulledImageRecord, TaskEventRecord, TaskRecord };

export const TERMINAL_STATES: ReadonlySet<TaskState> = new Set([
  TaskState.TASK_STATE_SUCCEEDED,
  TaskState.TASK_STATE_FAILED,
  TaskState.TASK_STATE_CANCELLED,
  TaskState.TASK_STATE_REJECTED,
]);

/** Exec sessions the history keeps (all tasks together), newest first. */
export const EXEC_HISTORY_KEEP = 1000;
/** How much of an exec's argv (as JSON) the history keeps. */
export const EXEC_HISTORY_COMMAND_CHARS = 1024;

/** An exec session in the node's history; endedAt and exitCode are absent while it runs. */
export interface ExecSessionRow extends ExecSessionRecord {
  endedAt?: number;
  exitCode?: number;
  error: string;
}

/** The argv as JSON within EXEC_HISTORY_COMMAND_CHARS: whole arguments kept while they fit, then "…". */
function historyCommand(argv: string[]): string {
  const kept: string[] = [];
  for (const a of argv) {
    const next = [...kept, a.length > 256 ? `${a.slice(0, 256)}…` : a];
    if (JSON.stringify([...next, '…']).length > EXEC_HISTORY_COMMAND_CHARS) {
      kept.push('…');
      break;
    }
    kept.splice(0, kept.length, ...next);
  }
  return JSON.stringify(kept);
}

export interface OutboxEntry {
  id: number;
  update: TaskUpdate;
}

/** A TaskUpdate before the store gives it its seq. */
/** An update as produced; seq is assigned by the store, capacity is added when it is sent. */
export type NewTaskUpdate = Omit<TaskUpdate, 'seq' | 'free' | 'accepting'>;

/** Contribution points older than this are dropped; the running total lives on in newer rows. */
export const CONTRIBUTION_RETENTION_MS = 30 * 24 * 3600_000;

const FILTER_STATE: Record<Exclude<HistoryFilter, 'running'>, TaskState> = {
  succeeded: TaskState.TASK_STATE_SUCCEEDED,
  failed: TaskState.TASK_STATE_FAILED,
  cancelled: TaskState.TASK_STATE_CANCELLED,
};

function encodeCursor(r: TaskRecord): string {
  return Buffer.from(JSON.stringify([r.createdAt, r.taskId, r.attempt])).toString('base64url');
}

function decodeCursor(cursor: string): [number, string, number] {
  try {
    const v = JSON.parse(Buffer.from(cursor, 'base64url').toString('utf8')) as unknown;
    if (Array.isArray(v) && v.length === 3 && Number.isFinite(v[0]) && typeof v[1] === 'string' && Number.isInteger(v[2])) return v as [number, string, number];
  } catch {
    // fall through
  }
  throw new RangeError(`"${cursor}" is not a history cursor (use nextBefore from the previous page)`);
}

interface ContributionRow {
  at: number;
  interval_ms: number;
  score: number;
  multiplier: number;
  cpu_percent: number;
  memory_percent: number;
  gpu_percent: number;
  total: number;
}

const toContribution = (r: ContributionRow): ContributionPoint => ({
  atMs: r.at,
  intervalMs: r.interval_ms,
  score: r.score,
  multiplier: r.multiplier,
  cpuPercent: r.cpu_percent,
  memoryPercent: r.memory_percent,
  gpuPercent: r.gpu_percent,
  total: r.total,
});

export interface SampleRetention {
  maxAgeMs: number;
  maxCount: number;
}

interface TaskRow {
  task_id: string;
  attempt: number;
  spec: string;
  state: string;
  outcome: string | null;
  gpu_indexes: string;
  result_path: string | null;
  result_size: number | null;
  result_sha256: string | null;
  result_uploaded: number;
  log_tail: string;
  logs_sent_until: string | null;
  progress?: string | null;
  created_at: number;
  updated_at: number;
  finished_at: number | null;
}

/** An outbox payload: plain JSON of the update, whose one map (progress.metrics) needs its Map back. */
function readUpdate(payload: string): TaskUpdate {
  const u = JSON.parse(payload) as TaskUpdate;
  if (u.progress) u.progress = TaskProgress.fromJSON(u.progress);
  return u;
}

function toRecord(r: TaskRow): TaskRecord {
  const rec: TaskRecord = {
    taskId: r.task_id,
    attempt: r.attempt,
    assignment: TaskAssignment.fromJSON(JSON.parse(r.spec)),
    state: taskStateFromJSON(r.state),
    gpuIndexes: JSON.parse(r.gpu_indexes) as number[],
    logTail: r.log_tail,
    createdAt: r.created_at,
    updatedAt: r.updated_at,
  };
  if (r.outcome) rec.outcome = JSON.parse(r.outcome) as TaskOutcome;
  if (r.result_path !== null) {
    rec.result = { path: r.result_path, size: r.result_size ?? 0, sha256: r.result_sha256 ?? '', uploaded: r.result_uploaded === 1 };
  }
  if (r.finished_at !== null) rec.finishedAt = r.finished_at;
  if (r.logs_sent_until !== null) rec.logsSentUntilNs = BigInt(r.logs_sent_until);
  if (r.progress) rec.progress = TaskProgress.fromJSON(JSON.parse(r.progress));
  return rec;
}

export class WorkerStore {
  private closed = false;

  private constructor(private readonly db: Database) {}

  /** Opens (creating if needed) the database file and brings its schema up to date. */
  static open(file: string): WorkerStore {
    mkdirSync(path.dirname(file), { recursive: true });
    // synchronous = NORMAL is durable across process crashes in WAL mode; only power loss may
    // drop the last transactions, which the master's idempotent UpdateTask tolerates.
    const pragmas = ['journal_mode = WAL', 'synchronous = NORMAL', 'foreign_keys = ON', 'busy_timeout = 5000'];
    return new WorkerStore(openSqlite(file, pragmas, WORKER_SCHEMA));
  }

  get schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  /**
   * Records an assignment. A resend of a known attempt changes nothing, except that an
   * attempt this node rejected earlier may be taken now (its seq keeps counting up).
   */
  insertTask(assignment: TaskAssignment, gpuIndexes: number[], at: number): void {
    this.db
      .prepare(
        `INSERT INTO tasks (task_id, attempt, spec, state, gpu_indexes, created_at, updated_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (task_id, attempt) DO UPDATE SET
           spec = excluded.spec, gpu_indexes = excluded.gpu_indexes, state = excluded.state,
           outcome = NULL, finished_at = NULL, updated_at = excluded.updated_at
         WHERE tasks.state = 'TASK_STATE_REJECTED'`,
      )
      .run(assignment.taskId, assignment.attempt, stringifyProto(assignment), taskStateToJSON(TaskState.TASK_STATE_ASSIGNED), JSON.stringify(gpuIndexes), at, at);
  }

  getTask(taskId: string, attempt: number): TaskRecord | undefined {
    const row = this.db.prepare(`SELECT * FROM tasks WHERE task_id = ? AND attempt = ?`).get(taskId, attempt) as TaskRow | undefined;
    return row ? toRecord(row) : undefined;
  }

  /** Tasks not in a terminal state (running at a crash, or mid-upload), oldest first. */
  unfinishedTasks(): TaskRecord[] {
    return (this.db.prepare(`SELECT * FROM tasks WHERE finished_at IS NULL ORDER BY created_at, rowid`).all() as TaskRow[]).map(toRecord);
  }

  recentTasks(limit = 100): TaskRecord[] {
    return (this.db.prepare(`SELECT * FROM tasks ORDER BY created_at DESC, rowid DESC LIMIT ?`).all(limit) as TaskRow[]).map(toRecord);
  }

  /**
   * One page of the task history, newest first, by keyset (fast at any depth): `before` is the
   * previous page's nextBefore.
   */
  historyPage(opts: { filter?: HistoryFilter; limit: number; before?: string }): HistoryPage {
    const where: string[] = [];
    const args: unknown[] = [];
    if (opts.filter === 'running') where.push('finished_at IS NULL');
    else if (opts.filter) {
      where.push('state = ?');
      args.push(taskStateToJSON(FILTER_STATE[opts.filter]));
    }
    if (opts.before) {
      where.push('(created_at, task_id, attempt) < (?, ?, ?)');
      args.push(...decodeCursor(opts.before));
    }
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''}
                 ORDER BY created_at DESC, task_id DESC, attempt DESC LIMIT ?`;
    const rows = this.db.prepare(sql).all(...args, opts.limit + 1) as TaskRow[];
    const tasks = rows.slice(0, opts.limit).map(toRecord);
    return rows.length > opts.limit ? { tasks, nextBefore: encodeCursor(tasks[tasks.length - 1]!) } : { tasks };
  }

  /** The latest attempt of a task this node ran. */
  latestAttempt(taskId: string): TaskRecord | undefined {
    const r = this.db.prepare(`SELECT * FROM tasks WHERE task_id = ? ORDER BY attempt DESC LIMIT 1`).get(taskId) as TaskRow | undefined;
    return r ? toRecord(r) : undefined;
  }

  /** Records a contribution point, adding it to the running total; returns it with the total. */
  addContribution(p: Omit<ContributionPoint, 'total'>): ContributionPoint {
    return this.db.transaction((): ContributionPoint => {
      const total = this.contributionTotal() + p.score;
      this.db
        .prepare(
          `INSERT INTO contributions (at, interval_ms, score, multiplier, cpu_percent, memory_percent, gpu_percent, total)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
        )
        .run(p.atMs, p.intervalMs, p.score, p.multiplier, p.cpuPercent, p.memoryPercent, p.gpuPercent, total);
      // Keep the newest row whatever its age: it carries the running total.
      this.db
        .prepare(`DELETE FROM contributions WHERE at < ? AND id < (SELECT MAX(id) FROM contributions)`)
        .run(p.atMs - CONTRIBUTION_RETENTION_MS);
      return { ...p, total };
    })();
  }

  contributionTotal(): number {
    const r = this.db.prepare(`SELECT total FROM contributions ORDER BY id DESC LIMIT 1`).get() as { total: number } | undefined;
    return r?.total ?? 0;
  }

  lastContribution(): ContributionPoint | undefined {
    const r = this.db.prepare(`SELECT * FROM contributions ORDER BY id DESC LIMIT 1`).get() as ContributionRow | undefined;
    return r ? toContribution(r) : undefined;
  }

  contributions(sinceMs: number): ContributionPoint[] {
    return (this.db.prepare(`SELECT * FROM contributions WHERE at >= ? ORDER BY id`).all(sinceMs) as ContributionRow[]).map(toContribution);
  }

  /**
   * Gives the update the next seq of its attempt and, in one transaction, applies it to the
   * task row, records the transition and queues it in the outbox. Returns the full update.
   */
  appendUpdate(update: NewTaskUpdate): TaskUpdate {
    return this.db.transaction((u: NewTaskUpdate): TaskUpdate => {
      const row = this.db
        .prepare(`UPDATE tasks SET next_seq = next_seq + 1 WHERE task_id = ? AND attempt = ? RETURNING next_seq - 1 AS seq`)
        .get(u.taskId, u.attempt) as { seq: number } | undefined;
      if (!row) throw new Error(`task ${u.taskId} attempt ${u.attempt} is not in the worker store`);
      const full: TaskUpdate = { ...u, seq: row.seq, accepting: false };
      const terminal = TERMINAL_STATES.has(u.state);
      this.db
        .prepare(
          `UPDATE tasks SET state = ?, updated_at = ?,
             outcome = COALESCE(?, outcome),
             finished_at = CASE WHEN ? THEN ? ELSE finished_at END
           WHERE task_id = ? AND attempt = ?`,
        )
        .run(taskStateToJSON(u.state), u.atMs, u.outcome ? JSON.stringify(u.outcome) : null, terminal ? 1 : 0, u.atMs, u.taskId, u.attempt);
      if (u.progress) {
        // A progress report is not a transition: it replaces the last one and leaves the task's
        // events alone (a long task would write one a second).
        this.db.prepare(`UPDATE tasks SET progress = ? WHERE task_id = ? AND attempt = ?`).run(stringifyProto(u.progress), u.taskId, u.attempt);
      } else {
        this.db
          .prepare(`INSERT INTO task_events (task_id, attempt, seq, state, message, at) VALUES (?, ?, ?, ?, ?, ?)`)
          .run(u.taskId, u.attempt, full.seq, taskStateToJSON(u.state), u.message, u.atMs);
      }
      this.db
        .prepare(`INSERT INTO outbox (task_id, attempt, seq, payload, created_at) VALUES (?, ?, ?, ?, ?)`)
        .run(u.taskId, u.attempt, full.seq, stringifyProto(full), u.atMs);
      return full;
    })(update);
  }

  taskEvents(taskId: string, attempt: number): TaskEventRecord[] {
    const rows = this.db
      .prepare(`SELECT seq, state, message, at FROM task_events WHERE task_id = ? AND attempt = ? ORDER BY id`)
      .all(taskId, attempt) as { seq: number; state: string; message: string; at: number }[];
    return rows.map((r) => ({ seq: r.seq, state: taskStateFromJSON(r.state), message: r.message, at: r.at }));
  }

  /**
   * Records what the executor produced, before any upload: after a crash the worker can
   * still upload the result and report the outcome without re-running the task.
   */
  setExecution(taskId: string, attempt: number, outcome: TaskOutcome, result: { path: string; size: number; sha256: string } | undefined, logTail: string): void {
    this.db
      .prepare(
        `UPDATE tasks SET outcome = ?, result_path = ?, result_size = ?, result_sha256 = ?, result_uploaded = 0, log_tail = ?
         WHERE task_id = ? AND attempt = ?`,
      )
      .run(JSON.stringify(outcome), result?.path ?? null, result?.size ?? null, result?.sha256 ?? null, logTail, taskId, attempt);
  }

  markResultUploaded(taskId: string, attempt: number): void {
    this.db.prepare(`UPDATE tasks SET result_uploaded = 1 WHERE task_id = ? AND attempt = ?`).run(taskId, attempt);
  }

  /** Results produced but not yet held by the master, oldest first. */
  pendingUploads(): TaskRecord[] {
    return (
      this.db
        .prepare(`SELECT * FROM tasks WHERE result_path IS NOT NULL AND result_uploaded = 0 AND finished_at IS NULL ORDER BY created_at, rowid`)
        .all() as TaskRow[]
    ).map(toRecord);
  }

  setLogsSentUntil(taskId: string, attempt: number, atNs: bigint): void {
    this.db.prepare(`UPDATE tasks SET logs_sent_until = ? WHERE task_id = ? AND attempt = ?`).run(atNs.toString(), taskId, attempt);
  }

  /** Records an exec session as it starts (refused ones too); the oldest beyond EXEC_HISTORY_KEEP go. */
  insertExecSession(r: ExecSessionRecord): void {
    this.db.transaction(() => {
      this.db
        .prepare(`INSERT OR IGNORE INTO exec_sessions (session_id, task_id, attempt, command, tty, started_at) VALUES (?, ?, ?, ?, ?, ?)`)
        .run(r.sessionId, r.taskId, r.attempt, historyCommand(r.command), r.tty ? 1 : 0, r.startedAt);
      this.db
        .prepare(`DELETE FROM exec_sessions WHERE session_id IN (SELECT session_id FROM exec_sessions ORDER BY started_at DESC, rowid DESC LIMIT -1 OFFSET ?)`)
        .run(EXEC_HISTORY_KEEP);
    })();
  }

  endExecSession(sessionId: string, end: ExecSessionEnd): void {
    this.db.prepare(`UPDATE exec_sessions SET ended_at = ?, exit_code = ?, error = ? WHERE session_id = ?`).run(end.endedAt, end.exitCode, end.error.slice(0, 1024), sessionId);
  }

  /** The task's exec sessions, oldest first (every attempt when `attempt` is absent). */
  execSessions(taskId: string, attempt?: number): ExecSessionRow[] {
    const rows = (
      attempt === undefined
        ? this.db.prepare(`SELECT * FROM exec_sessions WHERE task_id = ? ORDER BY started_at, rowid`).all(taskId)
        : this.db.prepare(`SELECT * FROM exec_sessions WHERE task_id = ? AND attempt = ? ORDER BY started_at, rowid`).all(taskId, attempt)
    ) as { session_id: string; task_id: string; attempt: number; command: string; tty: number; started_at: number; ended_at: number | null; exit_code: number | null; error: string }[];
    return rows.map((r) => ({
      sessionId: r.session_id,
      taskId: r.task_id,
      attempt: r.attempt,
      command: JSON.parse(r.command) as string[],
      tty: r.tty === 1,
      startedAt: r.started_at,
      ...(r.ended_at !== null ? { endedAt: r.ended_at } : {}),
      ...(r.exit_code !== null ? { exitCode: r.exit_code } : {}),
      error: r.error,
    }));
  }

  setLogTail(taskId: string, attempt: number, tail: string): void {
    this.db.prepare(`UPDATE tasks SET log_tail = ? WHERE task_id = ? AND attempt = ?`).run(tail, taskId, attempt);
  }

  /** Undelivered updates in the order they were produced. */
  outbox(limit = 1000): OutboxEntry[] {
    const rows = this.db.prepare(`SELECT id, payload FROM outbox ORDER BY id LIMIT ?`).all(limit) as { id: number; payload: string }[];
    return rows.map((r) => ({ id: r.id, update: readUpdate(r.payload) }));
  }

  /** Task attempts with updates the master has not acknowledged yet. */
  outboxTasks(): { taskId: string; attempt: number }[] {
    return (this.db.prepare(`SELECT DISTINCT task_id, attempt FROM outbox`).all() as { task_id: string; attempt: number }[]).map((r) => ({ taskId: r.task_id, attempt: r.attempt }));
  }

  outboxSize(): number {
    return (this.db.prepare(`SELECT COUNT(*) AS n FROM outbox`).get() as { n: number }).n;
  }

  /** Removes an update once the master acknowledged it. */
  ackOutbox(id: number): void {
    this.db.prepare(`DELETE FROM outbox WHERE id = ?`).run(id);
  }

  /**
   * Records that this worker pulled an image (a pull is also a use). Pulling again after the
   * image vanished keeps the record and moves both times forward.
   */
  recordImagePulled(image: string, at: number): void {
    this.db
      .prepare(
        `INSERT INTO pulled_images (image, pulled_at, last_used_at) VALUES (?, ?, ?)
         ON CONFLICT (image) DO UPDATE SET
           pulled_at = MAX(pulled_at, excluded.pulled_at),
           last_used_at = MAX(last_used_at, excluded.last_used_at)`,
      )
      .run(image, at, at);
  }

  /**
   * Records that a task used an image. Only images this worker pulled are tracked: a use of the
   * operator's own image records nothing (and so can never make it prunable). Returns whether
   * the image is tracked.
   */
  recordImageUsed(image: string, at: number): boolean {
    return this.db.prepare(`UPDATE pulled_images SET last_used_at = MAX(last_used_at, ?) WHERE image = ?`).run(at, image).changes > 0;
  }

  /** The images this worker pulled, least recently used first. */
  pulledImages(): PulledImageRecord[] {
    const rows = this.db.prepare(`SELECT image, pulled_at, last_used_at FROM pulled_images ORDER BY last_used_at, image`).all() as {
      image: string;
      pulled_at: number;
      last_used_at: number;
    }[];
    return rows.map((r) => ({ image: r.image, pulledAt: r.pulled_at, lastUsedAt: r.last_used_at }));
  }

  /** Drops an image's record once it has been removed (or was found gone). */
  forgetImage(image: string): void {
    this.db.prepare(`DELETE FROM pulled_images WHERE image = ?`).run(image);
  }

  /** The images named by tasks not in a terminal state: the image GC never removes these. */
  unfinishedTaskImages(): string[] {
    const rows = this.db
      .prepare(`SELECT DISTINCT json_extract(spec, '$.spec.image') AS image FROM tasks WHERE finished_at IS NULL`)
      .all() as { image: unknown }[];
    return rows.flatMap((r) => (typeof r.image === 'string' && r.image !== '' ? [r.image] : []));
  }

  /** Stores a report and trims old samples so the table stays bounded on a long-lived node. */
  addSample(report: ResourceReport, retention: SampleRetention): void {
    this.db.transaction(() => {
      this.db.prepare(`INSERT INTO resource_samples (at, sample) VALUES (?, ?)`).run(report.atMs, JSON.stringify(report));
      this.pruneSamples(report.atMs, retention);
    })();
  }

  pruneSamples(nowMs: number, retention: SampleRetention): number {
    const byAge = this.db.prepare(`DELETE FROM resource_samples WHERE at < ?`).run(nowMs - retention.maxAgeMs).changes;
    const byCount = this.db
      .prepare(`DELETE FROM resource_samples WHERE id NOT IN (SELECT id FROM resource_samples ORDER BY at DESC, id DESC LIMIT ?)`)
      .run(Math.max(0, retention.maxCount)).changes;
    return byAge + byCount;
  }

  samples(sinceMs = 0): ResourceReport[] {
    const rows = this.db.prepare(`SELECT sample FROM resource_samples WHERE at >= ? ORDER BY at, id`).all(sinceMs) as { sample: string }[];
    return rows.map((r) => JSON.parse(r.sample) as ResourceReport);
  }

  /** Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
