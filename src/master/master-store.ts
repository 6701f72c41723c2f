// The master's durable state (SQLite, or PostgreSQL through sql/pg-driver.ts): nodes, tasks with their event history, and enrollment
// tokens. Only hashes of secrets are stored. Every multi-row change runs in one transaction.
import { openMasterSql } from './sql/open-master-sql.js';
import { LeaseLostError } from './lease/lease-errors.js';
import type { SqlDriver as Db, SqlStatement as Statement, StoreLocation } from './sql/sql-driver.js';
import { NodeFacts, ResourceReport, TaskState } from '../protocol/gen/hivemind/v1/common.js';
import {
  TASK_COLUMNS, TASK_INSERT_ONLY_COLUMNS, TERMINAL_STATES, nodeFromRaw, taskChangeParams, taskFromRaw, taskToParams, tokenFromRaw,
  type EnrollmentTokenRow, type NodeRow, type RawNode, type RawTask, type RawToken, type TaskEventRow, type TaskPlacement, type TaskRow,
} from './store-rows.js';

/** What authenticating a node needs of it, cached per credential hash (no facts or report parsed per call). */
export type NodeIdentity = Readonly<Pick<NodeRow, 'id' | 'name' | 'facts' | 'credentialHash' | 'tunnelIp'>>;

/** Where a page of queued tasks ends (queuedTasksPage). */
export interface QueueCursor {
  createdAt: number;
  rowid: number;
}

/** Reports are written behind: the latest per node, in one transaction this often (and on close). */
const REPORT_FLUSH_MS = 1000;
/**
 * Rows written behind per transaction: a flush of more (10,000 nodes back at once) goes on in
 * further transactions on later turns of the event loop, so no one flush holds it for long. 1,000
 * rows held the loop 30-50 ms at 10,000 nodes (a CPU profile of bench:scale); 250 hold it ~10.
 */
const REPORT_FLUSH_ROWS = 250;
/** Ids per `IN (…)` list at most: well under SQLite's and PostgreSQL's bound on parameters. */
const IN_LIST_MAX = 500;
/** A task a node holds: neither queued nor ended. */
const LIVE_ON_NODE = `state NOT IN (${[...TERMINAL_STATES].join(',')}) AND state != ${TaskState.TASK_STATE_QUEUED}`;
/** Cached identities at most (a bound against a churn of registrations; the cache is refilled on use). */
const MAX_IDENTITIES = 200_000;

export { TERMINAL_STATES, isTerminal, type EnrollmentTokenRow, type NodeRow, type TaskEventRow, type TaskPlacement, type TaskRow } from './store-rows.js';

/** Told how long a transaction or a hot statement took (the master's metrics; cheap, synchronous). */
export type StoreTimer = (op: string, seconds: number) => void;

const PLACEMENT_SELECT = 'SELECT id, node_id, attempt, state FROM tasks WHERE id';
/** Ids per lookup of `taskPlacements` (a shorter list is padded with a repeated id). */
const PLACEMENT_BATCH = 32;
interface RawPlacement { id: string; node_id: string | null; attempt: number; state: number }
const placementFromRaw = (r: RawPlacement): TaskPlacement => ({ id: r.id, nodeId: r.node_id, attempt: r.attempt, state: r.state as TaskState });

export class MasterStore {
  private readonly db: Db;
  private readonly stmts: {
    insertNode: Statement; updateNodeFacts: Statement; getNode: Statement; nodeByHash: Statement; listNodes: Statement;
    recordReport: Statement; touchNode: Statement;
    insertTask: Statement; saveTask: Statement; getTask: Statement; queuedTasks: Statement;
    liveTasksOfNode: Statement; liveTasksOnNodes: Statement;
    insertEvent: Statement; listEvents: Statement;
    insertToken: Statement; getToken: Statement; useToken: Statement; countQueued: Statement; countNodes: Statement;
    placementOne: Statement; placementMany: Statement;
  };
  private closed = false;
  /** The latest report (and sign of life) per node not yet written; read through as if written. */
  private readonly unwritten = new Map<string, { report: ResourceReport | undefined; at: number }>();
  private flushTimer: NodeJS.Timeout | undefined;
  private readonly identities = new Map<string, NodeIdentity>();
  private readonly identityHash = new Map<string, string>();

  private constructor(db: Db, private readonly timer: StoreTimer | undefined) {
    this.db = db;
    this.stmts = {
      insertNode: db.prepare(`INSERT INTO nodes (id, name, facts, credential_hash, registered_at, last_seen, wg_public_key, tunnel_ip)
        VALUES (@id, @name, @facts, @credential_hash, @registered_at, @last_seen, @wg_public_key, @tunnel_ip)`),
      updateNodeFacts: db.prepare('UPDATE nodes SET name = ?, facts = ?, last_seen = ? WHERE id = ?'),
      getNode: db.prepare('SELECT * FROM nodes WHERE id = ?'),
      nodeByHash: db.prepare('SELECT * FROM nodes WHERE credential_hash = ?'),
      listNodes: db.prepare('SELECT * FROM nodes WHERE removed_at IS NULL ORDER BY registered_at, id'),
      recordReport: db.prepare('UPDATE nodes SET last_report = ?, last_seen = ? WHERE id = ?'),
      touchNode: db.prepare('UPDATE nodes SET last_seen = ? WHERE id = ?'),
      insertTask: db.prepare(`INSERT INTO tasks (${TASK_COLUMNS.join(', ')}) VALUES (${TASK_COLUMNS.map((c) => '@' + c).join(', ')})`),
      saveTask: db.prepare(`UPDATE tasks SET ${TASK_COLUMNS.filter((c) => !TASK_INSERT_ONLY_COLUMNS.includes(c)).map((c) => `${c} = @${c}`).join(', ')} WHERE id = @id`),
      getTask: db.prepare('SELECT * FROM tasks WHERE id = ?'),
      queuedTasks: db.prepare(`SELECT * FROM tasks WHERE state = ${TaskState.TASK_STATE_QUEUED} ORDER BY created_at, rowid`),
      liveTasksOfNode: db.prepare(`SELECT * FROM tasks WHERE node_id = ? AND ${LIVE_ON_NODE} ORDER BY created_at`),
      liveTasksOnNodes: db.prepare(`SELECT * FROM tasks WHERE node_id IS NOT NULL AND ${LIVE_ON_NODE} ORDER BY created_at`),
      insertEvent: db.prepare('INSERT INTO task_events (task_id, state, at, node_id, attempt, message) VALUES (?, ?, ?, ?, ?, ?)'),
      listEvents: db.prepare('SELECT state, at, node_id, attempt, message FROM task_events WHERE task_id = ? ORDER BY seq'),
      insertToken: db.prepare('INSERT INTO enrollment_tokens (hash, expires_at, uses_left, created_at) VALUES (?, ?, ?, ?)'),
      getToken: db.prepare('SELECT * FROM enrollment_tokens WHERE hash = ?'),
      useToken: db.prepare('UPDATE enrollment_tokens SET uses_left = uses_left - 1 WHERE hash = ? AND uses_left > 0'),
      countQueued: db.prepare(`SELECT COUNT(*) AS n FROM tasks WHERE state = ${TaskState.TASK_STATE_QUEUED}`),
      countNodes: db.prepare('SELECT COUNT(*) AS n FROM nodes WHERE removed_at IS NULL'),
      placementOne: db.prepare(`${PLACEMENT_SELECT} = ?`),
      placementMany: db.prepare(`${PLACEMENT_SELECT} IN (${Array.from({ length: PLACEMENT_BATCH }, () => '?').join(',')})`),
    };
  }

  /**
   * Opens (creating if needed) and migrates the database at `path` (":memory:" for tests), with
   * the pragmas of every master connection (MASTER_SQLITE_PRAGMAS in sql/open-master-sql.ts).
   */
  static open(where: string | StoreLocation, timer?: StoreTimer): MasterStore {
    return new MasterStore(openMasterSql(where), timer);
  }

  /**
   * With a lease (PostgreSQL, two masters): the term this master holds. Set once when the master
   * is built; undefined with SQLite (a single master, no check).
   */
  private leaseFence: { holder: string; epoch: () => number } | undefined;

  setLeaseFence(fence: { holder: string; epoch: () => number }): void {
    this.leaseFence = fence;
  }

  /**
   * Inside the transaction that assigns tasks: throws LeaseLostError unless this master still holds
   * its lease term by the database's clock. FOR SHARE makes a standby's take-over wait for this
   * transaction's commit, so an assignment is either stored before the take-over (and found by the
   * new master as it loads the state) or refused; a frozen-then-resumed old master cannot assign.
   */
  assertLeaseHeld(): void {
    const f = this.leaseFence;
    if (!f) return;
    const epoch = f.epoch();
    const row = this.db.prepare('SELECT 1 AS held FROM master_lease WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > now() FOR SHARE').get(f.holder, epoch);
    if (!row) throw new LeaseLostError(`this master (${f.holder}) no longer holds the master lease (epoch ${epoch}): nothing assigned; it stops serving`);
  }

  /** Runs `fn` in one transaction (nested calls join the outer one, timed as part of it). */
  transaction<T>(fn: () => T): T {
    if (this.db.inTransaction) return this.db.transaction(fn);
    return this.timed('transaction', () => this.db.transaction(fn));
  }

  private timed<T>(op: string, fn: () => T): T {
    if (!this.timer) return fn();
    const start = performance.now();
    try {
      return fn();
    } finally {
      this.timer(op, (performance.now() - start) / 1000);
    }
  }

  /** Tasks in state QUEUED: a count on the state index, cheap enough for every scrape. */
  countQueued(): number {
    return (this.stmts.countQueued.get() as { n: number }).n;
  }

  /** How many nodes are not removed (metrics count them by state): from the nodes_live index alone. */
  countNodes(): number {
    return Number((this.stmts.countNodes.get() as { n: number | string }).n);
  }

  // ---- nodes

  insertNode(n: { id: string; name: string; facts: NodeFacts; credentialHash: string; at: number; wgPublicKey?: string; tunnelIp?: string }): void {
    this.forgetIdentity(n.id);
    this.stmts.insertNode.run({
      id: n.id, name: n.name, facts: JSON.stringify(NodeFacts.toJSON(n.facts)), credential_hash: n.credentialHash,
      registered_at: n.at, last_seen: n.at, wg_public_key: n.wgPublicKey ?? null, tunnel_ip: n.tunnelIp ?? null,
    });
  }

  /** The tunnel hub's peers: id, key and address only (no facts or reports parsed); read once at start. */
  tunnelPeers(): { nodeId: string; publicKey: string; tunnelIp: string }[] {
    return (this.db.prepare('SELECT id, wg_public_key, tunnel_ip FROM nodes WHERE wg_public_key IS NOT NULL AND tunnel_ip IS NOT NULL AND removed_at IS NULL ORDER BY registered_at, id').all() as { id: string; wg_public_key: string; tunnel_ip: string }[])
      .map((r) => ({ nodeId: r.id, publicKey: r.wg_public_key, tunnelIp: r.tunnel_ip }));
  }

  /** Revokes the credential and frees the key and tunnel address; the row stays for task history. */
  removeNode(id: string, at: number): boolean {
    this.forgetIdentity(id);
    return this.db
      .prepare(`UPDATE nodes SET credential_hash = 'removed:' || id, wg_public_key = NULL, tunnel_ip = NULL, removed_at = ? WHERE id = ? AND removed_at IS NULL`)
      .run(at, id).changes === 1;
  }

  /** Enrollment tokens oldest first (created_at, then hash), after `after` when given; read lazily. */
  *iterateEnrollmentTokens(after?: { at: number; id: string }): Generator<EnrollmentTokenRow> {
    const rows = after
      ? this.db.prepare('SELECT * FROM enrollment_tokens WHERE created_at > ? OR (created_at = ? AND hash > ?) ORDER BY created_at, hash').iterate(after.at, after.at, after.id)
      : this.db.prepare('SELECT * FROM enrollment_tokens ORDER BY created_at, hash').iterate();
    for (const r of rows) yield tokenFromRaw(r as RawToken);
  }

  /** The tokens whose hash starts with `prefix` (a token id: 12 hex digits, checked by the caller). */
  enrollmentTokensByPrefix(prefix: string): EnrollmentTokenRow[] {
    return (this.db.prepare("SELECT * FROM enrollment_tokens WHERE substr(hash, 1, ?) = ? ORDER BY created_at").all(prefix.length, prefix) as RawToken[]).map(tokenFromRaw);
  }



  /** Revokes the tokens whose hash starts with `idPrefix`; returns how many. */
  revokeEnrollmentToken(idPrefix: string): number {
    return this.db.prepare(`UPDATE enrollment_tokens SET revoked = 1 WHERE substr(hash, 1, ?) = ?`).run(idPrefix.length, idPrefix).changes;
  }

  findNodeByWgKey(publicKey: string): NodeRow | undefined {
    const r = this.db.prepare('SELECT * FROM nodes WHERE wg_public_key = ?').get(publicKey) as RawNode | undefined;
    return r && this.nodeOf(r);
  }

  updateNodeFacts(id: string, name: string, facts: NodeFacts, at: number): void {
    this.forgetIdentity(id);
    this.stmts.updateNodeFacts.run(name, JSON.stringify(NodeFacts.toJSON(facts)), at, id);
  }

  getNode(id: string): NodeRow | undefined {
    const r = this.stmts.getNode.get(id) as RawNode | undefined;
    return r && this.nodeOf(r);
  }

  findNodeByCredentialHash(hash: string): NodeRow | undefined {
    const r = this.stmts.nodeByHash.get(hash) as RawNode | undefined;
    return r && this.nodeOf(r);
  }

  /** True when `id` is a node not removed: one row looked up (not every node parsed). */
  hasNode(id: string): boolean {
    return this.db.prepare('SELECT 1 AS found FROM nodes WHERE id = ? AND removed_at IS NULL').get(id) !== undefined;
  }

  listNodes(): NodeRow[] {
    return (this.stmts.listNodes.all() as RawNode[]).map((r) => this.nodeOf(r));
  }

  /** Nodes not removed, in registration order, after `after` when given; read lazily. */
  *iterateNodes(after?: { at: number; id: string }): Generator<NodeRow> {
    const rows = after
      ? this.db.prepare('SELECT * FROM nodes WHERE removed_at IS NULL AND (registered_at > ? OR (registered_at = ? AND id > ?)) ORDER BY registered_at, id').iterate(after.at, after.at, after.id)
      : this.stmts.listNodes.iterate();
    for (const r of rows) yield this.nodeOf(r as RawNode);
  }

  /**
   * Ids of the non-terminal tasks (ASSIGNED..UPLOADING) held by each of `nodeIds`, in a few queries
   * (a page of ListNodes: one query per node was most of a page's cost). Every id asked for is a
   * key of the result; oldest task first.
   */
  liveTaskIdsOfNodes(nodeIds: readonly string[]): Map<string, string[]> {
    const out = new Map<string, string[]>(nodeIds.map((id) => [id, []]));
    for (let i = 0; i < nodeIds.length; i += IN_LIST_MAX) {
      const part = nodeIds.slice(i, i + IN_LIST_MAX);
      const rows = this.db
        .prepare(`SELECT node_id, id FROM tasks WHERE node_id IN (${part.map(() => '?').join(',')}) AND ${LIVE_ON_NODE} ORDER BY created_at, id`)
        .all(...part) as { node_id: string; id: string }[];
      for (const r of rows) out.get(r.node_id)?.push(r.id);
    }
    return out;
  }

  /** A node's row with its report and last sign of life not yet written. */
  private nodeOf(r: RawNode): NodeRow {
    const n = nodeFromRaw(r);
    const u = this.unwritten.get(n.id);
    if (u) {
      n.lastSeen = u.at;
      if (u.report) n.lastReport = u.report;
    }
    return n;
  }

  /** Keeps the node's latest report; written with the others within REPORT_FLUSH_MS (write-behind). */
  recordReport(id: string, report: ResourceReport, at: number): void {
    this.unwritten.set(id, { report, at });
    this.flushSoon();
  }

  /** A sign of life without a report; written behind like reports. */
  touchNode(id: string, at: number): void {
    const u = this.unwritten.get(id);
    this.unwritten.set(id, { report: u?.report, at });
    this.flushSoon();
  }

  private flushSoon(): void {
    if (this.flushTimer || this.closed) return;
    this.flushTimer = setTimeout(() => {
      this.flushTimer = undefined;
      if (!this.closed) this.flushReports(REPORT_FLUSH_ROWS);
    }, REPORT_FLUSH_MS);
    this.flushTimer.unref();
  }

  /**
   * Writes the reports kept since the last flush: all of them (`rows` = Infinity, on close and in
   * tests), or up to `rows` per transaction with the rest on the next turn of the event loop.
   */
  flushReports(rows = Infinity): void {
    if (this.unwritten.size === 0) return;
    const batch: [string, { report: ResourceReport | undefined; at: number }][] = [];
    for (const e of this.unwritten) {
      if (batch.length >= rows) break;
      batch.push(e);
    }
    for (const [id] of batch) this.unwritten.delete(id);
    this.transaction(() => {
      for (const [id, u] of batch) {
        if (u.report) this.stmts.recordReport.run(JSON.stringify(ResourceReport.toJSON(u.report)), u.at, id);
        else this.stmts.touchNode.run(u.at, id);
      }
    });
    if (this.unwritten.size > 0 && rows !== Infinity) {
      setImmediate(() => {
        if (!this.closed) this.flushReports(rows);
      });
    }
  }

  /**
   * The node holding the credential with this hash, from a cache that the writes of a node's
   * name, facts or credential (register, re-register, remove) keep exact.
   */
  nodeIdentityByHash(hash: string): NodeIdentity | undefined {
    const hit = this.identities.get(hash);
    if (hit) return hit;
    const n = this.findNodeByCredentialHash(hash);
    if (!n) return undefined;
    if (this.identities.size >= MAX_IDENTITIES) {
      this.identities.clear();
      this.identityHash.clear();
    }
    const id: NodeIdentity = { id: n.id, name: n.name, facts: n.facts, credentialHash: n.credentialHash, tunnelIp: n.tunnelIp };
    this.identities.set(hash, id);
    this.identityHash.set(n.id, hash);
    return id;
  }

  private forgetIdentity(nodeId: string): void {
    const hash = this.identityHash.get(nodeId);
    if (hash === undefined) return;
    this.identityHash.delete(nodeId);
    this.identities.delete(hash);
  }

  // ---- tasks

  /** Inserts a new task together with its first event. */
  insertTask(t: TaskRow, event: TaskEventRow): void {
    this.transaction(() => {
      this.stmts.insertTask.run(taskToParams(t));
      this.insertEvent(t.id, event);
    });
  }

  getTask(id: string): TaskRow | undefined {
    const r = this.stmts.getTask.get(id) as RawTask | undefined;
    return r && taskFromRaw(r);
  }

  /**
   * Reads a task, lets `change` edit a copy and writes it back (with an optional event) in one
   * transaction. Returns the saved row, or undefined when the task does not exist or `change`
   * returned false (nothing written). `read`: the row as the caller read it in this same turn of
   * the event loop (nothing awaited since, so nothing can have written it): it is not read again
   * (a task update costs one read, not two) and `change` edits it in place.
   */
  updateTask(id: string, change: (t: TaskRow) => TaskEventRow | null | false, read?: TaskRow): TaskRow | undefined {
    return this.transaction(() => {
      const t = read ?? this.getTask(id);
      if (!t) return undefined;
      const event = change(t);
      if (event === false) return undefined;
      this.stmts.saveTask.run(taskChangeParams(t));
      if (event) this.insertEvent(id, event);
      return t;
    });
  }

  /**
   * Tasks newest first (created_at, then id, descending), after `before` when given; read lazily,
   * so a caller that stops early (a page full by bytes) parses no further row. `states` empty
   * means all; the caller bounds it (admin-listing.ts), as each state is one bound variable.
   */
  *iterateTasks(states: readonly TaskState[], before?: { at: number; id: string }): Generator<TaskRow> {
    const where: string[] = [];
    const params: unknown[] = [];
    if (states.length > 0) {
      where.push(`state IN (${states.map(() => '?').join(',')})`);
      params.push(...states);
    }
    if (before) {
      where.push('(created_at < ? OR (created_at = ? AND id < ?))');
      params.push(before.at, before.at, before.id);
    }
    const sql = `SELECT * FROM tasks ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY created_at DESC, id DESC`;
    for (const r of this.db.prepare(sql).iterate(...params)) yield taskFromRaw(r as RawTask);
  }

  /**
   * Where the tasks among `ids` stand (unknown ids are absent), in one query and without decoding
   * specs. `ids` is bounded by the caller (a node's validated running list).
   */
  taskPlacements(ids: readonly string[]): TaskPlacement[] {
    // Two statements prepared once (one id: a log chunk; a batch, padded by repeating an id: a
    // subscribe's list), not one compiled per call: each would be parsed and planned again, and
    // left to a finalizer in the next full GC.
    if (ids.length === 1) return (this.stmts.placementOne.all(ids[0]) as RawPlacement[]).map(placementFromRaw);
    const out: TaskPlacement[] = [];
    for (let i = 0; i < ids.length; i += PLACEMENT_BATCH) {
      const part = ids.slice(i, i + PLACEMENT_BATCH);
      while (part.length < PLACEMENT_BATCH) part.push(part[0]!);
      for (const r of this.stmts.placementMany.all(...part) as RawPlacement[]) out.push(placementFromRaw(r));
    }
    return out;
  }

  /**
   * One page of the queued tasks, oldest first (created_at, then rowid: the FIFO order), after
   * `after`; `next` is where the following page starts (undefined after the last). Served by the
   * (state, created_at) index, so each page costs its own rows only.
   */
  queuedTasksPage(after: QueueCursor | undefined, limit: number): { tasks: TaskRow[]; next: QueueCursor | undefined } {
    const rows = this.db
      .prepare(`SELECT rowid AS queue_rowid, * FROM tasks WHERE state = ${TaskState.TASK_STATE_QUEUED} AND (created_at > ? OR (created_at = ? AND rowid > ?)) ORDER BY created_at, rowid LIMIT ?`)
      .all(after?.createdAt ?? Number.MIN_SAFE_INTEGER, after?.createdAt ?? Number.MIN_SAFE_INTEGER, after?.rowid ?? -1, limit) as (RawTask & { queue_rowid: number })[];
    const last = rows[rows.length - 1];
    return { tasks: rows.map(taskFromRaw), next: rows.length === limit && last ? { createdAt: last.created_at, rowid: last.queue_rowid } : undefined };
  }

  /** Queued tasks, oldest first (the scheduler's FIFO order). */
  queuedTasks(): TaskRow[] {
    return this.timed('queued_tasks', () => (this.stmts.queuedTasks.all() as RawTask[]).map(taskFromRaw));
  }

  /** Non-terminal tasks the master believes are on `nodeId` (ASSIGNED..UPLOADING). */
  liveTasksOfNode(nodeId: string): TaskRow[] {
    return (this.stmts.liveTasksOfNode.all(nodeId) as RawTask[]).map(taskFromRaw);
  }

  /** Every non-terminal task held by some node. */
  liveTasksOnNodes(): TaskRow[] {
    return (this.stmts.liveTasksOnNodes.all() as RawTask[]).map(taskFromRaw);
  }

  /** The services each node holds a live replica of (the scheduler spreads replicas with it). */
  replicaServicesByNode(): Map<string, Set<string>> {
    const out = new Map<string, Set<string>>();
    const rows = this.db.prepare(`SELECT DISTINCT node_id, service FROM tasks WHERE service IS NOT NULL AND node_id IS NOT NULL AND ${LIVE_ON_NODE}`).all() as { node_id: string; service: string }[];
    for (const r of rows) {
      let set = out.get(r.node_id);
      if (!set) out.set(r.node_id, (set = new Set()));
      set.add(r.service);
    }
    return out;
  }

  listEvents(taskId: string): TaskEventRow[] {
    return (this.stmts.listEvents.all(taskId) as { state: number; at: number; node_id: string | null; attempt: number; message: string }[])
      .map((r) => ({ state: r.state as TaskState, at: r.at, nodeId: r.node_id, attempt: r.attempt, message: r.message }));
  }

  /** An event that is not a state change (an exec session): shown in the task's history. */
  addEvent(taskId: string, e: TaskEventRow): void {
    this.insertEvent(taskId, e);
  }

  private insertEvent(taskId: string, e: TaskEventRow): void {
    this.stmts.insertEvent.run(taskId, e.state, e.at, e.nodeId, e.attempt, e.message);
  }

  // ---- enrollment tokens

  insertEnrollmentToken(t: { hash: string; expiresAt: number; uses: number; createdAt: number }): void {
    this.stmts.insertToken.run(t.hash, t.expiresAt, t.uses, t.createdAt);
  }

  getEnrollmentToken(hash: string): EnrollmentTokenRow | undefined {
    const r = this.stmts.getToken.get(hash) as { hash: string; expires_at: number; uses_left: number; created_at: number; revoked: number } | undefined;
    return r && { hash: r.hash, expiresAt: r.expires_at, usesLeft: r.uses_left, createdAt: r.created_at, revoked: r.revoked !== 0 };
  }

  /**
   * Spends one use of a token and runs `then` in the same transaction, so that a token with one
   * use left cannot register two nodes. Returns why the token is refused, or undefined on success.
   */
  useEnrollmentToken(hash: string, now: number, then: () => void): 'unknown' | 'revoked' | 'expired' | 'used up' | undefined {
    return this.transaction(() => {
      const t = this.getEnrollmentToken(hash);
      if (!t) return 'unknown';
      if (t.revoked) return 'revoked';
      if (t.expiresAt <= now) return 'expired';
      if (this.stmts.useToken.run(hash).changes !== 1) return 'used up';
      then();
      return undefined;
    });
  }

  close(): void {
    if (this.closed) return;
    clearTimeout(this.flushTimer);
    try {
      this.flushReports();
    } finally {
      this.closed = true;
      this.db.close();
    }
  }
}
