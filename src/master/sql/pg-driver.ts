// The PostgreSQL driver, synchronous like better-sqlite3: a worker thread (pg-worker.ts) holds the
// connection; each statement is posted to it and the calling thread blocks on a shared flag
// (Atomics.wait) until the answer can be read with receiveMessageOnPort. The master's stores and
// every caller of them stay synchronous; the price is that a statement holds the event loop for
// its round trip, so the stores keep to few, batched statements (reports are written behind).
import { MessageChannel, Worker, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import { compilePlaceholders, bindValues, type CompiledSql } from './placeholders.js';
import { SqlError, StoreUnavailableError, redactUrl, sqlHead } from './sql-errors.js';
import type { SqlDriver, SqlStatement } from './sql-driver.js';
import type { PgReply, PgRequest, PgWorkerData } from './pg-worker.js';
import { embeddedAsset, isStandalone } from '../../common/embedded-assets.js';

/** The asset key scripts/build-exe.ts stores the bundled connection thread under (the executable has no dist/). */
export const PG_WORKER_ASSET = 'workers/pg-worker.cjs';

/** A statement (or connecting) taking longer is an error, not a hang. */
export const PG_STATEMENT_TIMEOUT_MS = 10_000;
/** Beyond the worker's own timeouts: the worker itself is stuck (should never happen). */
const WAKE_MARGIN_MS = 5_000;
/** Compiled SQL texts kept (the stores use a few dozen distinct ones; dynamic IN lists vary). */
const MAX_COMPILED = 1000;

export interface PgDriverOptions {
  timeoutMs?: number;
}

export class PgDriver implements SqlDriver {
  readonly dialect = 'postgres' as const;
  private depth = 0;
  private closed = false;
  private broken: Error | undefined;
  private readonly compiled = new Map<string, CompiledSql>();

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly flag: Int32Array,
    private readonly timeoutMs: number,
    private readonly where: string,
  ) {}

  /** Starts the connection's thread and connects (synchronously); throws StoreUnavailableError when it cannot. */
  static open(url: string, options: PgDriverOptions = {}): PgDriver {
    const timeoutMs = options.timeoutMs ?? PG_STATEMENT_TIMEOUT_MS;
    const { port1, port2 } = new MessageChannel();
    const flag = new Int32Array(new SharedArrayBuffer(4));
    const data: PgWorkerData = { port: port2, flag, url, timeoutMs };
    const worker = workerFor(data, redactUrl(url));
    // The thread never keeps the master alive by itself; errors come back as replies.
    worker.unref();
    port1.unref();
    const d = new PgDriver(worker, port1, flag, timeoutMs, redactUrl(url));
    try {
      d.prepare('SELECT 1').get();
    } catch (err) {
      d.close();
      throw err;
    }
    return d;
  }

  get inTransaction(): boolean {
    return this.depth > 0;
  }

  prepare(sql: string): SqlStatement {
    let c = this.compiled.get(sql);
    if (!c) {
      if (this.compiled.size >= MAX_COMPILED) this.compiled.clear();
      c = compilePlaceholders(sql);
      this.compiled.set(sql, c);
    }
    const compiled = c;
    const query = (params: unknown[]) => this.query(sql, compiled.text, bindValues(compiled, params));
    return {
      run: (...params) => ({ changes: query(params).rowCount }),
      get: (...params) => query(params).rows[0],
      all: (...params) => query(params).rows,
      // Read whole: the stores' lazy readers page by cursor (LIMITs), and a server-side cursor
      // would hold the connection between the reader's steps.
      iterate: (...params) => query(params).rows[Symbol.iterator](),
    };
  }

  exec(sql: string): void {
    this.query(sql, sql, undefined);
  }

  transaction<T>(fn: () => T): T {
    const depth = this.depth;
    // Nested: a savepoint inside the outer transaction, as better-sqlite3 does, so a nested failure
    // the caller catches does not doom the outer one.
    this.exec(depth === 0 ? 'BEGIN' : `SAVEPOINT hm_${depth}`);
    this.depth = depth + 1;
    try {
      const out = fn();
      this.exec(depth === 0 ? 'COMMIT' : `RELEASE SAVEPOINT hm_${depth}`);
      return out;
    } catch (err) {
      try {
        this.exec(depth === 0 ? 'ROLLBACK' : `ROLLBACK TO SAVEPOINT hm_${depth}`);
      } catch {
        // The first error is the one to report; a lost connection has rolled back anyway.
      }
      throw err;
    } finally {
      this.depth = depth;
    }
  }

  close(): void {
    if (this.closed) return;
    if (!this.broken) {
      try {
        this.call({ op: 'close' });
      } catch {
        // Closing anyway.
      }
    }
    this.closed = true;
    this.port.close();
    void this.worker.terminate();
  }

  private query(sql: string, text: string, params: unknown[] | undefined): { rows: unknown[]; rowCount: number } {
    const reply = this.call({ op: 'query', sql: text, params, inTransaction: this.depth > 0 });
    if (reply.ok) return reply;
    const what = `PostgreSQL (${this.where}): ${sqlHead(sql)}: ${reply.message}`;
    if (reply.unavailable) throw new StoreUnavailableError(what);
    throw new SqlError(what, reply.sqlState);
  }

  private call(req: PgRequest): PgReply {
    if (this.closed) throw new StoreUnavailableError(`PostgreSQL (${this.where}): the store is closed`);
    if (this.broken) throw this.broken;
    Atomics.store(this.flag, 0, 0);
    this.port.postMessage(req);
    if (Atomics.wait(this.flag, 0, 0, this.timeoutMs * 2 + WAKE_MARGIN_MS) === 'timed-out') {
      this.broken = new StoreUnavailableError(`PostgreSQL (${this.where}): no answer from the connection's thread in ${Math.round((this.timeoutMs * 2 + WAKE_MARGIN_MS) / 1000)} s; restart the master`);
      throw this.broken;
    }
    const m = receiveMessageOnPort(this.port);
    if (!m) throw new StoreUnavailableError(`PostgreSQL (${this.where}): woken without an answer`);
    return m.message as PgReply;
  }
}

/** The connection's thread: pg-worker.js beside this file, or in the executable its bundle (with `pg`) run by eval. */
function workerFor(data: PgWorkerData, where: string): Worker {
  const options = { workerData: data, transferList: [data.port] };
  if (!isStandalone()) return new Worker(new URL('./pg-worker.js', import.meta.url), options);
  const code = embeddedAsset(PG_WORKER_ASSET);
  if (!code) throw new StoreUnavailableError(`PostgreSQL (${where}): this executable carries no ${PG_WORKER_ASSET}: rebuild it with npm run build:exe`);
  return new Worker(code.toString('utf8'), { ...options, eval: true });
}
