// Schema migrations of the master's PostgreSQL database (sql/pg-migrate.ts; version in
// schema_version). Its own append-only list beside migrations.ts: 1 is SQLite's 1..7 at once,
// 2 is SQLite's 8.
// Integers are BIGINT (read back as numbers), flags stay 0/1 as in SQLite; tasks get an explicit
// `rowid` (BIGSERIAL) where SQLite has its implicit one, so the FIFO order and the replica
// lookups read the same in both.
import type { Schema } from '../common/sqlite-migrate.js';

/** Append only: never edit a migration that has shipped, add a new one. */
export const PG_MIGRATIONS: readonly string[] = [
  // 1: the schema of SQLite migrations 1..7
  `
  CREATE TABLE nodes (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    facts TEXT NOT NULL,
    credential_hash TEXT NOT NULL UNIQUE,
    registered_at BIGINT NOT NULL,
    last_seen BIGINT NOT NULL,
    last_report TEXT,
    wg_public_key TEXT,
    tunnel_ip TEXT,
    removed_at BIGINT
  );
  CREATE UNIQUE INDEX nodes_tunnel_ip ON nodes(tunnel_ip) WHERE tunnel_ip IS NOT NULL;
  CREATE UNIQUE INDEX nodes_wg_public_key ON nodes(wg_public_key) WHERE wg_public_key IS NOT NULL;

  CREATE TABLE tasks (
    rowid BIGSERIAL NOT NULL UNIQUE,
    id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state BIGINT NOT NULL,
    attempt BIGINT NOT NULL,
    max_attempts BIGINT NOT NULL,
    node_id TEXT REFERENCES nodes(id),
    queue_reason TEXT NOT NULL DEFAULT '',
    outcome TEXT,
    input_size BIGINT NOT NULL DEFAULT 0,
    input_sha256 TEXT NOT NULL DEFAULT '',
    result_size BIGINT,
    result_sha256 TEXT,
    cancel_requested BIGINT NOT NULL DEFAULT 0,
    cancel_reason TEXT NOT NULL DEFAULT '',
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    last_update_seq BIGINT NOT NULL DEFAULT 0,
    excluded_nodes TEXT NOT NULL DEFAULT '[]',
    service TEXT,
    replica BIGINT,
    replica_status TEXT,
    progress TEXT
  );
  CREATE INDEX tasks_state ON tasks(state, created_at, rowid);
  CREATE INDEX tasks_node ON tasks(node_id);
  CREATE INDEX tasks_service ON tasks(service, replica) WHERE service IS NOT NULL;

  CREATE TABLE task_events (
    seq BIGSERIAL PRIMARY KEY,
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    state BIGINT NOT NULL,
    at BIGINT NOT NULL,
    node_id TEXT,
    attempt BIGINT NOT NULL,
    message TEXT NOT NULL DEFAULT ''
  );
  CREATE INDEX task_events_task ON task_events(task_id, seq);

  CREATE TABLE enrollment_tokens (
    hash TEXT PRIMARY KEY,
    expires_at BIGINT NOT NULL,
    uses_left BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0
  );

  CREATE TABLE data_sets (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    created_at BIGINT NOT NULL
  );
  CREATE INDEX data_sets_created ON data_sets(created_at, sha256);
  CREATE TABLE data_names (
    name TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL REFERENCES data_sets(sha256) ON DELETE CASCADE,
    updated_at BIGINT NOT NULL
  );
  CREATE INDEX data_names_sha256 ON data_names(sha256);
  CREATE TABLE data_uploads (
    sha256 TEXT PRIMARY KEY,
    size BIGINT NOT NULL,
    kind BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
  );
  CREATE TABLE task_data (
    task_id TEXT NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
    sha256 TEXT NOT NULL,
    path TEXT NOT NULL,
    PRIMARY KEY (task_id, path)
  );
  CREATE INDEX task_data_sha256 ON task_data(sha256);
  CREATE TABLE data_removed (
    sha256 TEXT PRIMARY KEY,
    removed_at BIGINT NOT NULL
  );
  CREATE INDEX data_removed_at ON data_removed(removed_at, sha256);

  CREATE TABLE services (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    replicas BIGINT NOT NULL,
    public BIGINT NOT NULL,
    grace_ms BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    removing BIGINT NOT NULL DEFAULT 0
  );
  CREATE TABLE service_tokens (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    service TEXT NOT NULL,
    label TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked BIGINT NOT NULL DEFAULT 0,
    last_used BIGINT NOT NULL DEFAULT 0
  );
  CREATE INDEX service_tokens_service ON service_tokens(service, created_at);
  `,
  // 2: SQLite's 8, the admin listings' order from an index
  `
  CREATE INDEX tasks_created ON tasks(created_at, id);
  CREATE INDEX nodes_registered ON nodes(registered_at, id);
  `,
  // 3: the lease that makes one of two masters on this database the active one (lease/lease-store.ts)
  `
  CREATE TABLE master_lease (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires_at TIMESTAMPTZ NOT NULL
  );
  `,
  // 4: the WireGuard hub's key (hub-key.ts): every master on this database brings up the same hub
  `
  CREATE TABLE hub_identity (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    wg_private_key TEXT NOT NULL,
    created_at BIGINT NOT NULL
  );
  `,
  // 5: SQLite's 9, the nodes not removed counted from an index
  `
  CREATE INDEX nodes_live ON nodes(id) WHERE removed_at IS NULL;
  `,
];

/** The master's schema for migratePg. */
export const MASTER_PG_SCHEMA: Schema = {
  migrations: PG_MIGRATIONS,
  tooNew: (found, latest) => new Error(`master database (PostgreSQL) schema version ${found} is newer than this master (${latest}); upgrade the master`),
};
