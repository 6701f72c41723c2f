// Schema migrations of the master's SQLite database, run by common/sqlite-migrate.ts (keyed by
// PRAGMA user_version: migration N, 1-based, runs when user_version < N).
import type { Schema } from '../common/sqlite-migrate.js';

/** Append only: never edit a migration that has shipped, add a new one. */
export const MIGRATIONS: readonly string[] = [
  // 1: initial schema
  `
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    facts TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    registered_at INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    last_report TEXT
  );

  CREATE TABLE tasks (
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    node_id TEXT REFERENCES nodes(id),
    queue_reason TEXT NOT NULL DEFAULT '',
    outcome TEXT,
    input_size INTEGER NOT NULL DEFAULT 0,
    input_sha256 TEXT NOT NULL DEFAULT '',
    result_size INTEGER,
    result_sha256 TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    cancel_reason TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    last_update_seq INTEGER NOT NULL DEFAULT 0,
    excluded_nodes TEXT NOT NULL DEFAULT '[]'
  );
  CREATE INDEX tasks_state ON tasks(state, created_at);
  CREATE INDEX tasks_node ON tasks(node_id);

  CREATE TABLE task_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    state INTEGER NOT NULL,
    at INTEGER NOT NULL,
    node_id TEXT,
    attempt INTEGER NOT NULL,
    message TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX task_events_task ON task_events(task_id, seq);

  CREATE TABLE enrollment_tokens (
    hash TEXT PRIMARY KEY,
    expires_at INTEGER NOT NULL,
    uses_left INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
  );
  `,
  // 2: WireGuard: each node's public key and stable tunnel address
  `
  ALTER TABLE nodes ADD COLUMN wg_public_key TEXT;
  ALTER TABLE nodes ADD COLUMN tunnel_ip TEXT;
  CREATE UNIQUE INDEX nodes_tunnel_ip ON nodes(tunnel_ip) WHERE tunnel_ip IS NOT NULL;
  CREATE UNIQUE INDEX nodes_wg_public_key ON nodes(wg_public_key) WHERE wg_public_key IS NOT NULL;
  `,
  // 3: removed nodes stay for the history of their tasks, without credential, key or address
  `
  ALTER TABLE nodes ADD COLUMN removed_at INTEGER;
  `,
  // 4: data sets (content-addressed, data/sha256/<hex>), their names, interrupted uploads, and the
  // references of tasks to them (filled by task --data, issue 18 part 2); no foreign key from
  // task_data to data_sets: a finished task keeps its reference after the data set is removed
  `
  CREATE TABLE data_sets (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    created_at INTEGER NOT NULL
  );
  CREATE INDEX data_sets_created ON data_sets(created_at, sha256);
  CREATE TABLE data_names (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL REFERENCES data_sets(sha256) ON DELETE CASCADE,
    updated_at INTEGER NOT NULL
  );
  CREATE INDEX data_names_sha256 ON data_names(sha256);
  CREATE TABLE data_uploads (
    sha256 TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
  );
  CREATE TABLE task_data (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (task_id, path)
  );
  CREATE INDEX task_data_sha256 ON task_data(sha256);
  `,
  // 5: data sets removed at the master, so that nodes still caching one are told to drop it
  // (bounded: the most recent DATA_REMOVED_KEPT, see data-store.ts)
  `
  CREATE TABLE data_removed (
    sha256 TEXT PRIMARY KEY,
    removed_at INTEGER NOT NULL
  );
  CREATE INDEX data_removed_at ON data_removed(removed_at, sha256);
  `,
  // 6: services (issue 19): their specs and client tokens (only sha256 of each secret), and on the
  // task rows the replica a task is (from spec.service, for lookups) with its node's latest status
  // (the node sends it only when it changes, so it outlives a master restart here)
  `
  CREATE TABLE services (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    replicas INTEGER NOT NULL,
    public INTEGER NOT NULL,
    grace_ms INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    removing INTEGER NOT NULL DEFAULT 0
  );
  CREATE TABLE service_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0,
    last_used INTEGER NOT NULL DEFAULT 0
  );
  CREATE INDEX service_tokens_service ON service_tokens(service, created_at);
  ALTER TABLE tasks ADD COLUMN service TEXT;
  ALTER TABLE tasks ADD COLUMN replica INTEGER;
  ALTER TABLE tasks ADD COLUMN replica_status TEXT;
  CREATE INDEX tasks_service ON tasks(service, replica) WHERE service IS NOT NULL;
  `,
  // 7: a task's own latest progress report (issue 20, docs/progress.md), JSON of TaskProgress
  `
  ALTER TABLE tasks ADD COLUMN progress TEXT;
  `,
  // 8: the admin listings' order (ListTasks newest first, ListNodes by registration) read from an
  // index: without one, every page of ListTasks sorted the whole table (150 ms at 110,000 tasks)
  `
  CREATE INDEX tasks_created ON tasks(created_at, id);
  CREATE INDEX nodes_registered ON nodes(registered_at, id);
  `,
  // 9: the nodes not removed, counted on every /metrics scrape from this index alone (without it the
  // count read every node's row, past its facts and report, to reach removed_at)
  `
  CREATE INDEX nodes_live ON nodes(id) WHERE removed_at IS NULL;
  `,
];

/** The master's schema for openSqlite. */
export const MASTER_SCHEMA: Schema = {
  migrations: MIGRATIONS,
  tooNew: (found, latest) => new Error(`master database schema version ${found} is newer than this master (${latest}); upgrade the master`),
};
