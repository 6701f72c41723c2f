// Schema migrations of the worker's SQLite database, run by common/sqlite-migrate.ts in order and
// tracked with PRAGMA user_version. Append new steps; never edit a step that has shipped.
import type { Schema } from '../../common/sqlite-migrate.js';

export const MIGRATIONS: readonly string[] = [
  // 1: initial schema
  `
  CREATE TABLE tasks (
    task_id        TEXT    NOT NULL,
    attempt        INTEGER NOT NULL,
    spec           TEXT    NOT NULL,          -- JSON: the TaskAssignment as received
    state          TEXT    NOT NULL,          -- TaskState name, e.g. TASK_STATE_RUNNING
    outcome        TEXT,                      -- JSON TaskOutcome once terminal
    gpu_indexes    TEXT    NOT NULL DEFAULT '[]',
    next_seq       INTEGER NOT NULL DEFAULT 1, -- next TaskUpdate.seq for this attempt
    result_path    TEXT,
    result_size    INTEGER,
    result_sha256  TEXT,
    result_uploaded INTEGER NOT NULL DEFAULT 0,
    log_tail       TEXT    NOT NULL DEFAULT '',
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    finished_at    INTEGER,
    PRIMARY KEY (task_id, attempt)
  );
  CREATE INDEX tasks_unfinished ON tasks (finished_at) WHERE finished_at IS NULL;

  CREATE TABLE task_events (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id  TEXT    NOT NULL,
    attempt  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    state    TEXT    NOT NULL,
    message  TEXT    NOT NULL DEFAULT '',
    at       INTEGER NOT NULL
  );
  CREATE INDEX task_events_task ON task_events (task_id, attempt, id);

  CREATE TABLE resource_samples (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    at      INTEGER NOT NULL,
    sample  TEXT    NOT NULL                  -- JSON ResourceReport
  );
  CREATE INDEX resource_samples_at ON resource_samples (at);

  CREATE TABLE outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT, -- delivery order
    task_id  TEXT    NOT NULL,
    attempt  INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    payload  TEXT    NOT NULL,                -- JSON TaskUpdate
    created_at INTEGER NOT NULL,
    UNIQUE (task_id, attempt, seq)
  );
  `,
  // 2: the local monitor: history pages by time (optionally by state), contribution points
  `
  CREATE INDEX tasks_created ON tasks (created_at DESC, task_id DESC, attempt DESC);
  CREATE INDEX tasks_state_created ON tasks (state, created_at DESC, task_id DESC, attempt DESC);
  CREATE TABLE contributions (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    at          INTEGER NOT NULL,
    interval_ms INTEGER NOT NULL,
    score       REAL    NOT NULL,
    multiplier  REAL    NOT NULL,
    cpu_percent REAL    NOT NULL,
    memory_percent REAL NOT NULL,
    gpu_percent REAL    NOT NULL,
    total       REAL    NOT NULL              -- running total including this point
  );
  CREATE INDEX contributions_at ON contributions (at);
  `,
  // 3: images this worker pulled (the only ones its image GC may remove) and their last use
  `
  CREATE TABLE pulled_images (
    image        TEXT    PRIMARY KEY,         -- the reference as tasks name it, e.g. alpine:3.20
    pulled_at    INTEGER NOT NULL,
    last_used_at INTEGER NOT NULL
  );
  CREATE INDEX pulled_images_last_used ON pulled_images (last_used_at);
  `,
  // 4: how far the task's live log reached the master (Docker's log time in ns, as a decimal), so a
  //    worker that reattaches after a crash forwards what came after it, no less and no more
  `
  ALTER TABLE tasks ADD COLUMN logs_sent_until TEXT;
  `,
  // 5: the task's own latest progress report (docs/progress.md), as JSON of TaskProgress
  `
  ALTER TABLE tasks ADD COLUMN progress TEXT;
  `,
  // 6: exec sessions into the node's tasks (`hivemind exec`): when, what, how it ended
  `
  CREATE TABLE exec_sessions (
    session_id TEXT    PRIMARY KEY,           -- the master's, 32 hex digits
    task_id    TEXT    NOT NULL,
    attempt    INTEGER NOT NULL,
    command    TEXT    NOT NULL,              -- JSON argv, cut to EXEC_HISTORY_COMMAND_CHARS
    tty        INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    ended_at   INTEGER,
    exit_code  INTEGER,
    error      TEXT    NOT NULL DEFAULT ''
  );
  CREATE INDEX exec_sessions_task ON exec_sessions (task_id, attempt, started_at);
  `,
];

/** The worker's schema for openSqlite. */
export const WORKER_SCHEMA: Schema = {
  migrations: MIGRATIONS,
  tooNew: (found, latest) => new Error(`worker database schema version ${found} is newer than this worker understands (${latest}); upgrade the worker`),
};
