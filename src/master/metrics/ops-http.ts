// The master's operations listener (`--metrics-listen`): /healthz, /readyz and /metrics over plain
// HTTP, apart from the gateway and the gRPC services so that a probe or a scraper reaches the
// master whatever the state of those. Nothing here reads a request body; heads and whole requests
// are bounded in size and time, and connections in number.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { ADMIN_CHALLENGE, adminTokenRefusal } from '../gateway/gateway-metrics.js';
import { listenHttp } from '../../common/listen-http.js';

/** Ready, or not with a one-line reason (starting, shutting down, later: a standby master). */
export type Readiness = { ready: true } | { ready: false; reason: string };

export interface OpsHttpDeps {
  listen: { host: string; port: number };
  /**
   * Whether /metrics asks for the admin token: false on a loopback listener (only this host
   * reaches it), true on any other. Decided by the caller from the listen address.
   */
  metricsNeedToken: boolean;
  isAdminToken(token: string): boolean;
  readiness(): Readiness;
  /** The whole /metrics body, text format 0.0.4. */
  metrics(): Promise<string>;
  log: Logger;
}

export const OPS_LIMITS = {
  /** A request head must arrive within this (slow-header clients hold nothing for long). */
  headersTimeoutMs: 5_000,
  /** A whole request, answer included. */
  requestTimeoutMs: 10_000,
  keepAliveTimeoutMs: 5_000,
  /** Request head bytes; larger is answered 431 by Node. */
  maxHeaderBytes: 8 * 1024,
  /** Connections at once: probes and a few scrapers need a handful. */
  maxConnections: 64,
};

export type OpsRoute = 'healthz' | 'readyz' | 'metrics' | { status: 404 | 405; message: string };

/** Which route a request takes: the three paths (a query is ignored), GET or HEAD only. */
export function opsRoute(method: string | undefined, url: string | undefined): OpsRoute {
  const path = (url ?? '').split('?', 1)[0];
  const route = path === '/healthz' ? 'healthz' : path === '/readyz' ? 'readyz' : path === '/metrics' ? 'metrics' : undefined;
  if (!route) return { status: 404, message: 'no such route: the master answers GET /healthz, /readyz and /metrics here' };
  if (method !== 'GET' && method !== 'HEAD') return { status: 405, message: `${route} is read with GET` };
  return route;
}

export class OpsHttpServer {
  private server: Server | undefined;
  private closing: Promise<void> | undefined;

  constructor(private readonly deps: OpsHttpDeps) {}

  /** Binds the listen address; returns the base URL (port 0 binds a free port). */
  async start(): Promise<{ url: string }> {
    if (this.server) throw new Error('operations listener already started');
    const { host, port } = this.deps.listen;
    const server = createServer({
      headersTimeout: OPS_LIMITS.headersTimeoutMs,
      requestTimeout: OPS_LIMITS.requestTimeoutMs,
      keepAliveTimeout: OPS_LIMITS.keepAliveTimeoutMs,
      maxHeaderSize: OPS_LIMITS.maxHeaderBytes,
      connectionsCheckingInterval: 1_000,
    });
    server.maxConnections = OPS_LIMITS.maxConnections;
    server.on('request', (req, res) => this.onRequest(req, res));
    this.server = server;
    const bound = await listenHttp(server, host, port).catch((err: unknown) => {
      this.server = undefined;
      throw new ConfigError(`master: cannot listen on ${host}:${port} for metrics and health: ${errorMessage(err)} (--metrics-listen HOST:PORT, or off)`, { cause: err });
    });
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
    this.deps.log.info({ url, metricsAuth: this.deps.metricsNeedToken ? 'admin token' : 'none (loopback)' }, 'operations listening: /healthz /readyz /metrics');
    return { url };
  }

  /** Idempotent: stops listening and cuts open connections. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      const server = this.server;
      if (!server) return;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    })();
    return this.closing;
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    // A body is never read: a request announcing one gets its answer and the connection closes,
    // instead of Node draining whatever the client sends.
    if (req.headers['content-length'] !== undefined || req.headers['transfer-encoding'] !== undefined) res.shouldKeepAlive = false;
    const route = opsRoute(req.method, req.url);
    if (typeof route === 'object') return answer(req, res, route.status, `${route.message}\n`, route.status === 405 ? { Allow: 'GET, HEAD' } : {});
    if (route === 'healthz') return answer(req, res, 200, 'ok\n');
    if (route === 'readyz') {
      const r = this.deps.readiness();
      return r.ready ? answer(req, res, 200, 'ready\n') : answer(req, res, 503, `not ready: ${r.reason}\n`);
    }
    if (this.deps.metricsNeedToken) {
      const refusal = adminTokenRefusal(req.headers.authorization, (t) => this.deps.isAdminToken(t));
      if (refusal !== undefined) return answer(req, res, 401, `${refusal}\n`, ADMIN_CHALLENGE);
    }
    this.deps.metrics().then(
      (body) => answer(req, res, 200, body, {}, 'text/plain; version=0.0.4; charset=utf-8'),
      (err: unknown) => {
        this.deps.log.error({ err: errorMessage(err) }, 'metrics failed');
        answer(req, res, 500, 'the master could not read its metrics (see its log)\n');
      },
    );
  }
}

function answer(req: IncomingMessage, res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}, type = 'text/plain; charset=utf-8'): void {
  if (res.headersSent || res.destroyed) return;
  res.writeHead(status, { 'Content-Type': type, 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...headers });
  res.end(req.method === 'HEAD' ? undefined : body);
}
