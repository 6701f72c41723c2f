// The local web monitor: Express serves the page, a JSON API, /metrics and health checks;
// Socket.IO pushes status, samples, contribution points, task changes and followed logs as
// they happen (and the Services panel every SERVICES_PUSH_MS while replicas run, for their rates).
// It only reads the worker through MonitoredNode/MonitorStore and only changes it
// through pause/resume/cancelTask. See docs/monitor.md for the contract with the page.
import { registerExecMetrics } from './exec-metrics.js';
import { createServer, type Server as HttpServer } from 'node:http';
import express, { type Request, type Response, type NextFunction } from 'express';
import { Server as SocketServer } from 'socket.io';
import type { Clock } from '../common/clock.js';
import { HivemindError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import type { HistoryFilter, WorkerEvents } from '../worker/contracts.js';
import { LiveTasks } from './live-tasks.js';
import { DEFAULT_LOG_RELAY, LogRelay } from './log-relay.js';
import { MonitorMetrics } from './monitor-metrics.js';
import { TOKEN_COOKIE, checkMonitorBinding, createGuard, securityHeaders, tokenMatches, type Guard } from './monitor-security.js';
import { cacheView } from './cache-view.js';
import { buildStatus } from './monitor-status.js';
import type { CacheView, ServicesView, StatusView } from './monitor-types.js';
import { PipeRates, servicesView } from './replica-view.js';
import { contributionView, sampleView, taskDetailView, taskRowView } from './monitor-view.js';
import type { MonitoredNode, MonitorStore } from './monitored-node.js';
import { BadRequest, answerRequestError } from './request-errors.js';
import { mountWebAssets } from './web-assets.js';

export class MonitorPortInUseError extends HivemindError {
  constructor(host: string, port: number) {
    super('MONITOR_PORT_IN_USE', `monitor: port ${port} on ${host} is already in use (another worker?): choose one with --monitor-port, or --monitor-port 0 to run without the monitor`);
  }
}

export interface MonitorOptions {
  host: string;
  /** 0 = any free port (tests); the CLI uses 0 to mean "no monitor" before getting here. */
  port: number;
  token?: string;
  /** Minimum time between two `status` pushes. */
  statusMinIntervalMs?: number;
  logRelay?: Partial<typeof DEFAULT_LOG_RELAY>;
  /** Where monitor.html and assets/ live (default: the package's web/). */
  webDir?: string;
}

export interface MonitorDeps {
  node: MonitoredNode;
  store: MonitorStore;
  clock: Clock;
  logger: Logger;
}

const HISTORY_FILTERS: readonly HistoryFilter[] = ['succeeded', 'failed', 'cancelled', 'running'];
const HOUR_MS = 3600_000;
const TUNNEL_CACHE_MS = 2_000;

function intParam(v: unknown, name: string, min: number, max: number, dflt: number): number {
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (typeof v !== 'string' || !Number.isInteger(n) || n < min || n > max) throw new BadRequest(`${name} must be an integer from ${min} to ${max}`);
  return n;
}

/** Task logs one Socket.IO connection may follow at once (its own room is one more). */
export const MAX_FOLLOWS_PER_SOCKET = 16;

/** How often the Services panel is pushed while replicas run: their request rates move without events. */
export const SERVICES_PUSH_MS = 2_000;

export class MonitorServer {
  private readonly http: HttpServer;
  private readonly io: SocketServer;
  private readonly live: LiveTasks;
  private readonly logs: LogRelay;
  private readonly metrics: MonitorMetrics;
  private readonly guard: Guard;
  private readonly log: Logger;
  private readonly detach: (() => void)[] = [];
  private statusTimer: NodeJS.Timeout | undefined;
  private lastStatusAt = 0;
  private tunnelCache: { at: number; value: TunnelStatus | undefined } | undefined;
  private lastDocker: { ok: boolean; message: string } | undefined;
  private lastCacheJson: string | undefined;
  private lastServicesJson: string | undefined;
  private readonly rates = new PipeRates();
  private servicesTimer: NodeJS.Timeout | undefined;
  private closed = false;

  private constructor(private readonly opts: Required<Pick<MonitorOptions, 'host' | 'port' | 'statusMinIntervalMs'>> & MonitorOptions, private readonly d: MonitorDeps) {
    this.log = d.logger.child({ component: 'monitor' });
    this.live = new LiveTasks((id, attempt) => d.store.getTask(id, attempt));
    this.logs = new LogRelay({ ...DEFAULT_LOG_RELAY, ...opts.logRelay, emit: (push) => this.io.to(`log:${push.taskId}`).emit('log', push) });
    this.metrics = new MonitorMetrics(() => d.clock.now(), () => d.node.runningTasks().length, () => d.node.accepting, d.node.dataCache, d.node);
    registerExecMetrics(this.metrics.registry, () => d.node.execCounters);
    this.guard = createGuard({ port: () => this.port, token: opts.token, listenHost: opts.host });
    this.http = createServer(this.app());
    this.io = new SocketServer(this.http, {
      // The page loads the client from /vendor/socket.io/ (web-assets.ts), also in the executable.
      serveClient: false,
      allowRequest: (req, cb) => {
        // The token may come in the CONNECT packet (checked in io.use); only Host and Origin here.
        const badHost = this.guard.refuseHost(req);
        if (badHost) return cb(badHost, false);
        const origin = req.headers.origin;
        if (origin && origin !== `http://${req.headers.host}` && origin !== `https://${req.headers.host}`) return cb(`cross-site connection refused (Origin ${origin})`, false);
        cb(null, true);
      },
    });
    this.io.use((socket, next) => {
      const refusal = this.guard.refuse(socket.request, socket.handshake.auth);
      next(refusal ? new Error(refusal.message) : undefined);
    });
    this.io.on('connection', (socket) => {
      void this.status().then((s) => socket.emit('status', s), (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'status failed'));
      this.emitCache(socket, true);
      this.emitServices(socket, true);
      socket.on('follow', (msg: unknown) => {
        const taskId = (msg as { taskId?: unknown } | undefined)?.taskId;
        if (typeof taskId !== 'string' || taskId.length > 200) return;
        // A page follows one task's log at a time; a client asking for thousands gets no more
        // rooms (each would hold memory and a share of every log broadcast).
        if (socket.rooms.size > MAX_FOLLOWS_PER_SOCKET && !socket.rooms.has(`log:${taskId}`)) return;
        void socket.join(`log:${taskId}`);
        const tail = this.logs.tail(taskId);
        if (tail?.text) socket.emit('log', { taskId, attempt: tail.attempt, text: tail.text, dropped: 0 });
      });
      socket.on('unfollow', (msg: unknown) => {
        const taskId = (msg as { taskId?: unknown } | undefined)?.taskId;
        if (typeof taskId === 'string') void socket.leave(`log:${taskId}`);
      });
    });
    this.subscribe();
  }

  /** Validates the binding, listens, and starts pushing. A busy port is a MonitorPortInUseError. */
  static async start(options: MonitorOptions, deps: MonitorDeps): Promise<MonitorServer> {
    checkMonitorBinding(options.host, options.token);
    const server = new MonitorServer({ statusMinIntervalMs: 250, ...options }, deps);
    await new Promise<void>((resolveListen, reject) => {
      const onError = (err: NodeJS.ErrnoException) => {
        server.http.off('listening', onListening);
        reject(err.code === 'EADDRINUSE' ? new MonitorPortInUseError(options.host, options.port) : err);
      };
      const onListening = () => {
        server.http.off('error', onError);
        resolveListen();
      };
      server.http.once('error', onError);
      server.http.once('listening', onListening);
      server.http.listen(options.port, options.host);
    }).catch(async (err: unknown) => {
      await server.close();
      throw err;
    });
    server.log.info({ url: server.url }, 'monitor listening');
    return server;
  }

  get port(): number {
    const a = this.http.address();
    return a && typeof a === 'object' ? a.port : this.opts.port;
  }

  get url(): string {
    const host = this.opts.host.includes(':') ? `[${this.opts.host}]` : this.opts.host;
    return `http://${host === '0.0.0.0' || host === '[::]' ? 'localhost' : host}:${this.port}/monitor.html`;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const off of this.detach) off();
    if (this.statusTimer) clearTimeout(this.statusTimer);
    if (this.servicesTimer) clearInterval(this.servicesTimer);
    this.logs.close();
    await new Promise<void>((r) => {
      this.io.close(() => r());
      this.http.closeAllConnections?.();
    });
  }

  // ------------------------------------------------------------------ live updates

  private subscribe(): void {
    const { node } = this.d;
    this.live.seed(node.runningTasks(), () => undefined);
    const on = <K extends keyof WorkerEvents>(event: K, fn: (...args: WorkerEvents[K]) => void) => {
      const wrapped = ((...args: WorkerEvents[K]) => {
        try {
          fn(...args);
        } catch (err) {
          this.log.warn({ err: errorMessage(err), event }, 'monitor could not handle a worker event');
        }
      }) as never;
      node.on(event, wrapped);
      this.detach.push(() => node.off(event, wrapped));
    };
    on('state-changed', () => this.statusSoon());
    on('accepting-changed', () => this.statusSoon());
    on('task-updated', (u) => {
      this.live.onUpdate(u);
      this.metrics.onUpdate(u);
      const rec = this.d.store.getTask(u.taskId, u.attempt);
      if (rec) this.io.emit('task', taskRowView(rec));
      if (!this.live.has(u.taskId)) this.logs.finish(u.taskId);
      this.statusSoon();
    });
    on('task-progress', (p) => {
      this.metrics.onProgress(p);
      if (this.live.onProgress(p)) this.statusSoon();
    });
    // Unthrottled from the worker; the status push is what is coalesced.
    on('task-data-progress', (p) => {
      if (this.live.onDataProgress(p)) this.statusSoon();
    });
    on('task-log', (e) => this.logs.push(e.taskId, e.attempt, e.data));
    on('report', (r) => {
      this.live.onReport(r);
      this.metrics.onReport(r);
      this.lastDocker = { ok: r.dockerOk, message: r.dockerMessage };
      if (r.tunnel) this.tunnelCache = { at: this.d.clock.now(), value: r.tunnel };
      this.io.emit('sample', sampleView(r));
      this.statusSoon();
    });
    on('contribution', (p) => this.io.emit('contribution', { ...contributionView(p), total: p.total }));
    on('replica-status', () => this.statusSoon());
    this.servicesTimer = setInterval(() => {
      if (this.io.engine.clientsCount > 0 && this.d.node.replicas().length > 0) this.emitServices(this.io, false);
    }, SERVICES_PUSH_MS);
    this.servicesTimer.unref();
  }

  /** Coalesces status pushes to at most one per statusMinIntervalMs. */
  private statusSoon(): void {
    if (this.statusTimer || this.closed) return;
    const wait = Math.max(0, this.lastStatusAt + this.opts.statusMinIntervalMs - Date.now());
    this.statusTimer = setTimeout(() => {
      this.statusTimer = undefined;
      this.lastStatusAt = Date.now();
      this.status().then(
        (s) => this.io.emit('status', s),
        (err: unknown) => this.log.warn({ err: errorMessage(err) }, 'status failed'),
      );
      this.emitCache(this.io, false);
      this.emitServices(this.io, false);
    }, wait);
  }

  /** The cache panel, with the status; to all pages only when it changed (a fetch moves the status, not the cache). */
  private emitCache(to: { emit(event: 'cache', view: CacheView): unknown }, always: boolean): void {
    if (!this.d.node.dataCache) return;
    try {
      const view = this.cache();
      if (!view) return;
      const json = JSON.stringify(view);
      if (!always && json === this.lastCacheJson) return;
      if (!always) this.lastCacheJson = json;
      to.emit('cache', view);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'data cache view failed');
    }
  }

  /** The Services panel: to one page on connect, to all when it changed. */
  private emitServices(to: { emit(event: 'services', view: ServicesView): unknown }, always: boolean): void {
    try {
      const view = this.services();
      const json = JSON.stringify(view);
      if (!always && json === this.lastServicesJson) return;
      if (!always) this.lastServicesJson = json;
      to.emit('services', view);
    } catch (err) {
      this.log.warn({ err: errorMessage(err) }, 'services view failed');
    }
  }

  /** The replicas on this node with their pipe traffic, and the gateway pipe's counters. */
  services(): ServicesView {
    return servicesView(this.d.node.replicas(), this.d.node.gateway, this.rates, this.d.clock.now());
  }

  private async tunnel(): Promise<TunnelStatus | undefined> {
    const now = this.d.clock.now();
    if (this.tunnelCache && now - this.tunnelCache.at < TUNNEL_CACHE_MS) return this.tunnelCache.value;
    const value = await this.d.node.tunnelStatus().catch(() => this.tunnelCache?.value);
    this.tunnelCache = { at: now, value };
    return value;
  }

  async status(): Promise<StatusView> {
    return buildStatus({ node: this.d.node, store: this.d.store, now: this.d.clock.now(), tunnel: await this.tunnel(), docker: this.lastDocker, running: this.live.list() });
  }

  /** The data cache panel's view; null on a node without a data cache. */
  cache(): CacheView | null {
    const c = this.d.node.dataCache;
    return c ? cacheView(c.stats(), c.list()) : null;
  }

  // ------------------------------------------------------------------ HTTP

  private app(): express.Express {
    const app = express();
    app.disable('x-powered-by');
    app.set('etag', false);
    app.use(securityHeaders);

    // Supervisors' probes: no token, no data beyond ready or not and why.
    app.get('/healthz', (_req, res) => {
      res.type('text/plain').send('ok\n');
    });
    app.get('/readyz', (_req, res) => {
      const reasons: string[] = [];
      if (this.d.node.state !== 'connected') reasons.push(`worker is ${this.d.node.state}`);
      if (this.lastDocker && !this.lastDocker.ok) reasons.push('Docker is not usable');
      res.status(reasons.length ? 503 : 200).type('text/plain').send(reasons.length ? `not ready: ${reasons.join('; ')}\n` : 'ready\n');
    });

    // Opening the page with ?token= once swaps the token for an HttpOnly cookie.
    app.get('/monitor.html', (req, res, next) => {
      const q = req.query.token;
      if (this.opts.token === undefined || typeof q !== 'string') return next();
      const hostRefusal = this.guard.refuse(req, { token: q });
      if (hostRefusal) return void res.status(hostRefusal.status).type('text/plain').send(`${hostRefusal.message}\n`);
      if (!tokenMatches(this.opts.token, q)) return void res.status(401).type('text/plain').send('wrong monitor token\n');
      res.cookie(TOKEN_COOKIE, q, { httpOnly: true, sameSite: 'strict', path: '/' });
      res.redirect(302, '/monitor.html');
    });

    app.use((req, res, next) => {
      const refusal = this.guard.refuse(req);
      if (!refusal) return next();
      res.status(refusal.status).type('text/plain').send(`${refusal.message}\n`);
    });

    app.get('/', (_req, res) => res.redirect(302, '/monitor.html'));
    mountWebAssets(app, this.opts.webDir);

    app.get('/metrics', async (_req, res) => {
      const m = await this.metrics.text();
      res.type(m.contentType).send(m.body);
    });

    const api = express.Router();
    api.use((_req, res, next) => {
      res.setHeader('Cache-Control', 'no-store');
      next();
    });
    api.get('/status', async (_req, res) => {
      res.json(await this.status());
    });
    api.get('/tasks', (req, res) => {
      const filter = req.query.state;
      if (filter !== undefined && filter !== '' && !HISTORY_FILTERS.includes(filter as HistoryFilter)) {
        throw new BadRequest(`state must be one of ${HISTORY_FILTERS.join(', ')}`);
      }
      const before = typeof req.query.before === 'string' && req.query.before !== '' ? req.query.before : undefined;
      const limit = intParam(req.query.limit, 'limit', 1, 200, 50);
      let page;
      try {
        page = this.d.store.historyPage({ limit, ...(filter ? { filter: filter as HistoryFilter } : {}), ...(before ? { before } : {}) });
      } catch (err) {
        if (err instanceof RangeError) throw new BadRequest(err.message);
        throw err;
      }
      res.json({ tasks: page.tasks.map(taskRowView), nextBefore: page.nextBefore ?? null });
    });
    api.get('/tasks/:id', (req, res) => {
      const rec = this.d.store.latestAttempt(String(req.params.id));
      if (!rec) return void res.status(404).json({ error: `no task ${req.params.id} on this node` });
      const live = this.logs.tail(rec.taskId);
      const tail = live && live.attempt === rec.attempt && !rec.finishedAt ? live.text : rec.logTail;
      res.json({ task: taskDetailView(rec, this.d.store.taskEvents(rec.taskId, rec.attempt), tail, this.d.store.execSessions(rec.taskId, rec.attempt)) });
    });
    api.get('/tasks/:id/logs', (req, res) => {
      const rec = this.d.store.latestAttempt(String(req.params.id));
      if (!rec) return void res.status(404).json({ error: `no task ${req.params.id} on this node` });
      const live = this.logs.tail(rec.taskId);
      res.type('text/plain; charset=utf-8').send(live && live.attempt === rec.attempt && !rec.finishedAt ? live.text : rec.logTail);
    });
    api.get('/cache', (_req, res) => {
      res.json({ cache: this.cache() });
    });
    api.get('/services', (_req, res) => {
      res.json(this.services());
    });
    api.get('/resources', (req, res) => {
      const since = intParam(req.query.since, 'since', 0, Number.MAX_SAFE_INTEGER, this.d.clock.now() - HOUR_MS);
      res.json({ samples: this.d.store.samples(since).map(sampleView) });
    });
    api.get('/contributions', (req, res) => {
      const since = intParam(req.query.since, 'since', 0, Number.MAX_SAFE_INTEGER, this.d.clock.now() - HOUR_MS);
      res.json({ points: this.d.store.contributions(since).map(contributionView), total: this.d.store.contributionTotal() });
    });

    // Controls: same-origin only.
    const control = (req: Request, res: Response, next: NextFunction) => {
      const refusal = this.guard.refuseControl(req);
      if (refusal) return void res.status(403).json({ error: refusal });
      next();
    };
    api.post('/pause', control, async (_req, res) => {
      this.d.node.pause();
      this.log.info('paused from the monitor');
      res.json({ ok: true, status: await this.status() });
    });
    api.post('/resume', control, async (_req, res) => {
      this.d.node.resume();
      this.log.info('resumed from the monitor');
      res.json({ ok: true, status: await this.status() });
    });
    api.post('/tasks/:id/cancel', control, (req, res) => {
      const id = String(req.params.id);
      if (!this.d.node.cancelTask(id)) return void res.status(404).json({ error: `task ${id} is not running on this node` });
      this.log.info({ taskId: id }, 'task cancelled from the monitor');
      res.json({ ok: true });
    });
    api.use((_req, res) => {
      res.status(404).json({ error: 'no such API route' });
    });
    app.use('/api', api);

    app.use((_req, res) => {
      res.status(404).type('text/plain').send('not found\n');
    });
    // Express 5 routes rejected promises here too.
    // A hostile path or query is the client's error (400/404, debug log); only our own are 500s.
    app.use((err: unknown, req: Request, res: Response, _next: NextFunction) => {
      const answer = answerRequestError(err);
      if (answer.logLevel === 'error') this.log.error({ err: errorMessage(err) }, 'monitor request failed');
      else this.log.debug({ status: answer.status, err: errorMessage(err), path: req.path.slice(0, 200) }, 'monitor request refused');
      if (res.headersSent) return;
      res.status(answer.status).json({ error: answer.message });
    });
    return app;
  }
}
