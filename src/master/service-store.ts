// The services and their client tokens in the master's SQLite database (migration 6), and the
// lookups of replica tasks by service (the tasks' own rows, indexed by service and replica). Only
// the sha256 of a token's secret is stored.
import { openMasterSql } from './sql/open-master-sql.js';
import type { SqlDriver as Db, StoreLocation } from './sql/sql-driver.js';
import { TaskSpec } from '../protocol/gen/hivemind/v1/common.js';
import { stringifyProto } from '../protocol/proto-json.js';
import { TERMINAL_STATES, taskFromRaw, type RawTask, type TaskRow } from './store-rows.js';

export interface ServiceRow {
  name: string;
  /** The replica spec, spec.service holding port and health path (replica and name unset). */
  spec: TaskSpec;
  replicas: number;
  public: boolean;
  graceMs: number;
  createdAt: number;
  removing: boolean;
}

export interface ServiceTokenRow {
  /** The first 12 hex digits of the secret's sha256. */
  id: string;
  hash: string;
  service: string;
  label: string;
  createdAt: number;
  /** 0 = never. */
  expiresAt: number;
  revoked: boolean;
  lastUsed: number;
}

/** Tokens kept per service (ListServiceTokens answers all of them). */
export const MAX_TOKENS_PER_SERVICE = 1000;

interface RawService { name: string; spec: string; replicas: number; public: number; grace_ms: number; created_at: number; removing: number }
interface RawServiceToken { id: string; hash: string; service: string; label: string; created_at: number; expires_at: number; revoked: number; last_used: number }

function serviceFromRaw(r: RawService): ServiceRow {
  return {
    name: r.name, spec: TaskSpec.fromJSON(JSON.parse(r.spec)), replicas: r.replicas, public: r.public !== 0,
    graceMs: r.grace_ms, createdAt: r.created_at, removing: r.removing !== 0,
  };
}

function tokenFromRaw(r: RawServiceToken): ServiceTokenRow {
  return {
    id: r.id, hash: r.hash, service: r.service, label: r.label, createdAt: r.created_at,
    expiresAt: r.expires_at, revoked: r.revoked !== 0, lastUsed: r.last_used,
  };
}

const TERMINAL = [...TERMINAL_STATES].join(',');

export class ServiceStore {
  private closed = false;

  private constructor(private readonly db: Db) {}

  /** Opens the master's database at `path` (its own connection, as DataStore does). */
  static open(where: string | StoreLocation): ServiceStore {
    return new ServiceStore(openMasterSql(where));
  }

  /** False when a service of that name exists already. */
  insertService(s: ServiceRow): boolean {
    return this.db.prepare(`INSERT INTO services (name, spec, replicas, public, grace_ms, created_at, removing)
      VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING`).run(s.name, stringifyProto(s.spec), s.replicas, s.public ? 1 : 0, s.graceMs, s.createdAt, s.removing ? 1 : 0).changes === 1;
  }

  getService(name: string): ServiceRow | undefined {
    const r = this.db.prepare('SELECT * FROM services WHERE name = ?').get(name) as RawService | undefined;
    return r && serviceFromRaw(r);
  }

  /** Services by name, after `after` when given; read lazily. */
  *iterateServices(after?: string): Generator<ServiceRow> {
    const rows = after === undefined
      ? this.db.prepare('SELECT * FROM services ORDER BY name').iterate()
      : this.db.prepare('SELECT * FROM services WHERE name > ? ORDER BY name').iterate(after);
    for (const r of rows) yield serviceFromRaw(r as RawService);
  }

  serviceCount(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM services').get() as { n: number }).n;
  }

  serviceNames(): string[] {
    return (this.db.prepare('SELECT name FROM services ORDER BY name').all() as { name: string }[]).map((r) => r.name);
  }

  setReplicas(name: string, replicas: number): void {
    this.db.prepare('UPDATE services SET replicas = ? WHERE name = ?').run(replicas, name);
  }

  markRemoving(name: string): void {
    this.db.prepare('UPDATE services SET removing = 1 WHERE name = ?').run(name);
  }

  /** Deletes the service and its tokens: a later service of the same name starts with none. */
  deleteService(name: string): void {
    this.db.transaction(() => {
      this.db.prepare('DELETE FROM service_tokens WHERE service = ?').run(name);
      this.db.prepare('DELETE FROM services WHERE name = ?').run(name);
    });
  }

  /**
   * The service's live replica tasks and, for each replica index, its latest task: what the
   * reconciler and ServiceInfo need, bounded however many replacements the history holds.
   */
  replicaTasks(name: string): TaskRow[] {
    const rows = this.db.prepare(`SELECT * FROM tasks WHERE service = ? AND (state NOT IN (${TERMINAL})
      OR rowid IN (SELECT max(rowid) FROM tasks WHERE service = ? GROUP BY replica)) ORDER BY replica, created_at, rowid`).all(name, name) as RawTask[];
    return rows.map(taskFromRaw);
  }

  /** Live replica tasks of the service (queued up to uploading). */
  liveReplicaTasks(name: string): TaskRow[] {
    return (this.db.prepare(`SELECT * FROM tasks WHERE service = ? AND state NOT IN (${TERMINAL}) ORDER BY replica, created_at, rowid`).all(name) as RawTask[]).map(taskFromRaw);
  }

  // ---- tokens

  insertToken(t: ServiceTokenRow): void {
    this.db.prepare('INSERT INTO service_tokens (id, hash, service, label, created_at, expires_at, revoked, last_used) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
      .run(t.id, t.hash, t.service, t.label, t.createdAt, t.expiresAt, t.revoked ? 1 : 0, t.lastUsed);
  }

  tokenCount(service: string): number {
    return (this.db.prepare('SELECT count(*) AS n FROM service_tokens WHERE service = ?').get(service) as { n: number }).n;
  }

  tokensOf(service: string): ServiceTokenRow[] {
    return (this.db.prepare('SELECT * FROM service_tokens WHERE service = ? ORDER BY created_at, id LIMIT ?').all(service, MAX_TOKENS_PER_SERVICE) as RawServiceToken[]).map(tokenFromRaw);
  }

  tokenByHash(hash: string): ServiceTokenRow | undefined {
    const r = this.db.prepare('SELECT * FROM service_tokens WHERE hash = ?').get(hash) as RawServiceToken | undefined;
    return r && tokenFromRaw(r);
  }

  getToken(id: string): ServiceTokenRow | undefined {
    const r = this.db.prepare('SELECT * FROM service_tokens WHERE id = ?').get(id) as RawServiceToken | undefined;
    return r && tokenFromRaw(r);
  }

  /** Deletes the service's oldest revoked or expired token; false when every token is live. */
  dropOldestDeadToken(service: string, now: number): boolean {
    return this.db.prepare(`DELETE FROM service_tokens WHERE id = (SELECT id FROM service_tokens WHERE service = ?
      AND (revoked = 1 OR (expires_at != 0 AND expires_at <= ?)) ORDER BY created_at, id LIMIT 1)`).run(service, now).changes === 1;
  }

  revokeToken(id: string): void {
    this.db.prepare('UPDATE service_tokens SET revoked = 1 WHERE id = ?').run(id);
  }

  touchToken(id: string, at: number): void {
    this.db.prepare('UPDATE service_tokens SET last_used = ? WHERE id = ?').run(at, id);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.db.close();
  }
}
