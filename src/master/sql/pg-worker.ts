// The PostgreSQL driver's worker thread: holds the one `pg` connection, runs each request the main
// thread posts and wakes it (pg-driver.ts blocks on the shared flag until the answer is posted).
import { workerData, type MessagePort } from 'node:worker_threads';
import pg from 'pg';

export interface PgWorkerData {
  port: MessagePort;
  flag: Int32Array;
  url: string;
  timeoutMs: number;
}

export type PgRequest = { op: 'query'; sql: string; params: unknown[] | undefined; inTransaction: boolean } | { op: 'close' };
export type PgReply = { ok: true; rows: unknown[]; rowCount: number } | { ok: false; message: string; sqlState: string | undefined; unavailable: boolean };

const { port, flag, url, timeoutMs } = workerData as PgWorkerData;

// Ids, sizes and times are BIGINT: safe integers, read as numbers like SQLite's; so are counts.
pg.types.setTypeParser(pg.types.builtins.INT8, (v) => Number(v));
pg.types.setTypeParser(pg.types.builtins.NUMERIC, (v) => Number(v));

let client: pg.Client | undefined;

async function connect(): Promise<pg.Client> {
  // statement_timeout ends a stuck statement at the server; query_timeout a silent server.
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: timeoutMs, query_timeout: timeoutMs, statement_timeout: timeoutMs, application_name: 'hivemind-master' });
  // A lost connection is reopened by the next statement outside a transaction.
  c.on('error', () => {
    if (client === c) client = undefined;
  });
  await c.connect();
  return c;
}

async function handle(req: PgRequest): Promise<PgReply> {
  if (req.op === 'close') {
    const c = client;
    client = undefined;
    await c?.end();
    return { ok: true, rows: [], rowCount: 0 };
  }
  if (!client) {
    if (req.inTransaction) return { ok: false, message: 'the connection to PostgreSQL was lost in a transaction', sqlState: undefined, unavailable: true };
    try {
      client = await connect();
    } catch (err) {
      return { ok: false, message: `cannot connect: ${(err as Error).message}`, sqlState: (err as { code?: string }).code, unavailable: true };
    }
  }
  try {
    // Without parameters: the simple protocol, which takes several statements (migrations).
    const r = await client.query(req.params ? { text: req.sql, values: req.params } : req.sql);
    return { ok: true, rows: r.rows, rowCount: r.rowCount ?? 0 };
  } catch (err) {
    const e = err as Error & { code?: string };
    const unavailable = e.code === undefined || e.code.startsWith('08') || e.code === '57P01';
    return { ok: false, message: e.message, sqlState: e.code, unavailable };
  }
}

port.on('message', (req: PgRequest) => {
  void handle(req).then((reply) => {
    port.postMessage(reply);
    Atomics.store(flag, 0, 1);
    Atomics.notify(flag, 0);
  });
});
