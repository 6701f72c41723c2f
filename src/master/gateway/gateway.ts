// The master's HTTP gateway: `/s/NAME/REST?query` is proxied to a healthy replica of service NAME
// as `/REST?query`, through the gateway pipe of the replica's node (one pipe connection per client
// request). Bodies stream both ways without buffering, Upgrade (WebSocket) connections are relayed
// byte for byte, and a client that goes away closes the replica's side too. Plain HTTP: TLS is a
// reverse proxy's job in front of it. With a metrics source, `GET /metrics` answers the master's
// metrics (gateway-metrics.ts) to the admin token only.
import { createServer, request as httpRequest, STATUS_CODES, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { Socket } from 'node:net';
import { systemClock, type Clock } from '../../common/clock.js';
import { isLoopbackHost } from '../../common/address.js';
import { ConfigError, errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import { GATEWAY_DEFAULTS } from '../../config/defaults.js';
import type { GatewayDirectory, GatewayReplica, GatewayService } from './gateway-directory.js';
import { GatewayTraffic, type TrafficTrack } from './gateway-traffic.js';
import { ADMIN_CHALLENGE, METRICS_PATH, adminTokenRefusal, renderGatewayMetrics, type GatewayMetricsSource } from './gateway-metrics.js';
import { downstreamResponseHeaders, upstreamRequestHeaders } from './forwarded-headers.js';
import { bearerToken, parseGatewayPath } from './gateway-path.js';
import { dialPipe } from './pipe-dialer.js';
import { pickReplica } from './replica-pick.js';
import { listenHttp } from '../../common/listen-http.js';

export interface GatewayLimits {
  maxRequests: number;
  maxServiceRequests: number;
  headersTimeoutMs: number;
  connectionsCheckIntervalMs: number;
  dialTimeoutMs: number;
  maxPathBytes: number;
  keepAliveTimeoutMs: number;
}

export interface GatewayDeps {
  directory: GatewayDirectory;
  logger: Logger;
  clock?: Clock;
  /** Port 0 picks a free one (read it back from start()'s url). */
  listen: { host: string; port: number };
  /** Each left out takes GATEWAY_DEFAULTS. */
  limits?: Partial<GatewayLimits>;
  /** Serve GET /metrics to the admin token; absent: /metrics is no route (404). */
  metrics?: GatewayMetricsSource;
}

/** Why the gateway answers a request itself, before any replica is involved. */
interface Refusal {
  status: number;
  code: string;
  message: string;
  headers?: Record<string, string>;
}

interface Admitted {
  service: GatewayService;
  path: string;
  prefix: string;
}

/** How many replicas a request tries when pipes fail: the first pick and one other. */
const MAX_TRIES = 2;

export class Gateway {
  readonly traffic: GatewayTraffic;
  private readonly limits: GatewayLimits;
  private readonly clock: Clock;
  private readonly log: Logger;
  private server: Server | undefined;
  private closing: Promise<void> | undefined;
  /** Requests and upgraded connections in flight, against limits.maxRequests. */
  private active = 0;
  /** Round-robin cursors of the pick, per service name. */
  private readonly cursors = new Map<string, number>();
  /** Sockets the HTTP server does not track: pipes to replicas and upgraded client connections. */
  private readonly detached = new Set<Duplex>();

  constructor(private readonly deps: GatewayDeps) {
    this.limits = { ...GATEWAY_DEFAULTS, ...deps.limits };
    this.clock = deps.clock ?? systemClock;
    this.log = deps.logger.child({ component: 'gateway' });
    this.traffic = new GatewayTraffic(this.clock);
  }

  /** Binds the listen address; returns the gateway's base URL. */
  async start(): Promise<{ url: string }> {
    if (this.server) throw new Error('gateway already started');
    const { host, port } = this.deps.listen;
    const server = createServer({
      // Streams (SSE, long polls, uploads) may last: no time limit on a whole request, but its head
      // must arrive in time, or a slow-header client (slowloris) holds a connection for free.
      requestTimeout: 0,
      headersTimeout: this.limits.headersTimeoutMs,
      connectionsCheckingInterval: this.limits.connectionsCheckIntervalMs,
      keepAliveTimeout: this.limits.keepAliveTimeoutMs,
      // Node's maxHeaderSize (16 KiB) bounds the request head; larger is answered 431 by Node.
    });
    server.on('request', (req, res) => this.onRequest(req, res));
    server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => this.onUpgrade(req, socket, head));
    this.server = server;
    const bound = await listenHttp(server, host, port).catch((err: unknown) => {
      throw new ConfigError(`gateway: cannot listen on ${host}:${port}: ${errorMessage(err)} (--gateway-listen HOST:PORT, or off)`, { cause: err });
    });
    const url = `http://${host.includes(':') ? `[${host}]` : host}:${bound}`;
    this.log.info({ url }, 'gateway listening');
    return { url };
  }

  /** Idempotent: stops listening and cuts every open connection, both sides. */
  close(): Promise<void> {
    this.closing ??= this.doClose();
    return this.closing;
  }

  private async doClose(): Promise<void> {
    const server = this.server;
    if (!server) return;
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    server.closeAllConnections();
    for (const s of this.detached) s.destroy();
    this.detached.clear();
    await closed;
    this.log.info('gateway closed');
  }

  /** Path, service, token, health and load: the same checks for a request and an upgrade. */
  private admit(req: IncomingMessage): Admitted | Refusal {
    const route = parseGatewayPath(req.url ?? '', this.limits.maxPathBytes);
    if (route.kind === 'refuse') return { status: route.status, code: route.status === 404 ? 'NOT_FOUND' : 'BAD_PATH', message: route.message };
    if (route.kind === 'redirect') return { status: 308, code: 'REDIRECT', message: `the service lives under ${route.location}`, headers: { Location: route.location } };
    const service = this.deps.directory.service(route.service);
    if (!service) return { status: 404, code: 'NO_SUCH_SERVICE', message: `no service named "${route.service}"` };
    if (!service.public) {
      const token = bearerToken(req.headers.authorization);
      const challenge = { 'WWW-Authenticate': `Bearer realm="hivemind", service="${service.name}"` };
      if (token === undefined) return { status: 401, code: 'UNAUTHENTICATED', message: `service "${service.name}" needs a token: send Authorization: Bearer <token> (hivemind service token create ${service.name})`, headers: challenge };
      if (!this.deps.directory.tokenAllows(service.name, token)) return { status: 401, code: 'UNAUTHENTICATED', message: `the token is not a live token of service "${service.name}" (unknown, revoked or expired)`, headers: challenge };
    }
    if (!service.replicas.some((r) => r.healthy)) {
      return { status: 503, code: 'NO_HEALTHY_REPLICA', message: `service "${service.name}" has no healthy replica now (hivemind service get ${service.name})`, headers: { 'Retry-After': '5' } };
    }
    if (this.traffic.serviceInFlight(service.name) >= this.limits.maxServiceRequests) {
      return { status: 429, code: 'SERVICE_BUSY', message: `service "${service.name}" has ${this.limits.maxServiceRequests} requests in flight, the gateway's limit per service`, headers: { 'Retry-After': '1' } };
    }
    return { service, path: route.path, prefix: route.prefix };
  }

  private overloaded(): Refusal | undefined {
    // `active` already counts the request asking.
    if (this.active <= this.limits.maxRequests) return undefined;
    return { status: 503, code: 'GATEWAY_BUSY', message: `the gateway has ${this.limits.maxRequests} requests in flight, its limit`, headers: { 'Retry-After': '1' } };
  }

  /**
   * A pipe to a healthy replica: the least loaded one, and when its pipe fails, one other. Each try
   * is a request on that replica's counters (a failed one an error).
   */
  private async connectReplica(service: GatewayService, signal: AbortSignal): Promise<{ socket: Socket; replica: GatewayReplica; track: TrafficTrack } | { error: string }> {
    const tried = new Set<string>();
    let lastError = `service "${service.name}" has no healthy replica now`;
    for (let i = 0; i < MAX_TRIES; i++) {
      const cursor = this.cursors.get(service.name) ?? 0;
      this.cursors.set(service.name, cursor + 1);
      const replica = pickReplica(service.replicas, (id) => this.traffic.inFlight(id), cursor, tried);
      if (!replica) break;
      tried.add(replica.taskId);
      const track = this.traffic.startReplica(replica.taskId);
      const pipe = this.deps.directory.pipeOf(replica.nodeId);
      if (!pipe) {
        track.end(true);
        lastError = `node ${replica.nodeId} of replica ${replica.index} has no gateway pipe`;
        continue;
      }
      try {
        const socket = await dialPipe(pipe, { taskId: replica.taskId, attempt: replica.attempt }, { timeoutMs: this.limits.dialTimeoutMs, signal });
        return { socket, replica, track };
      } catch (err) {
        // A client that left during the dial is not the replica's failure.
        track.end(!signal.aborted);
        lastError = errorMessage(err);
        if (signal.aborted) break;
        this.log.warn({ service: service.name, taskId: replica.taskId, nodeId: replica.nodeId, err: lastError }, 'gateway pipe failed');
      }
    }
    return { error: lastError };
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    this.active++;
    res.once('close', () => this.active--);
    // Answered at once, even when the gateway is at its limit: that is when an operator looks.
    if (this.deps.metrics && isMetricsTarget(req.url)) return this.serveMetrics(req, res, this.deps.metrics);
    const refusal = this.overloaded() ?? this.admit(req);
    if ('status' in refusal) return refuse(res, refusal);
    this.forward(req, res, refusal).catch((err: unknown) => {
      // A bug, not a replica's doing: the client still gets an answer or a cut, never a hang.
      this.log.error({ err: errorMessage(err) }, 'gateway request failed');
      if (res.headersSent) res.destroy();
      else refuse(res, { status: 502, code: 'GATEWAY_ERROR', message: 'the gateway failed to forward the request' });
    });
  }

  /** The master's metrics: the admin token only (a service token is no admin token: 401 too). */
  private serveMetrics(req: IncomingMessage, res: ServerResponse, source: GatewayMetricsSource): void {
    if (req.method !== 'GET' && req.method !== 'HEAD') return refuse(res, { status: 405, code: 'METHOD_NOT_ALLOWED', message: 'metrics are read with GET', headers: { Allow: 'GET, HEAD' } });
    const refusal = adminTokenRefusal(req.headers.authorization, (t) => source.isAdminToken(t));
    if (refusal !== undefined) return refuse(res, { status: 401, code: 'UNAUTHENTICATED', message: refusal, headers: ADMIN_CHALLENGE });
    let body: string;
    try {
      body = this.metricsText(source);
    } catch (err) {
      this.log.error({ err: errorMessage(err) }, 'metrics failed');
      return refuse(res, { status: 500, code: 'METRICS_FAILED', message: 'the master could not read its metrics (see its log)' });
    }
    res.writeHead(200, { 'Content-Type': 'text/plain; version=0.0.4; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store' });
    res.end(req.method === 'HEAD' ? undefined : body);
  }

  /**
   * The gateway's series (services' replicas, traffic) as text: what its own /metrics answers,
   * and what the master's operations listener appends to its series (one renderer for both).
   */
  metricsText(source: Pick<GatewayMetricsSource, 'services'> | undefined = this.deps.metrics): string {
    const services = (source?.services() ?? []).map((s) => ({ ...s, replicas: this.deps.directory.service(s.name)?.replicas ?? [] }));
    return renderGatewayMetrics(this.traffic, services);
  }

  private async forward(req: IncomingMessage, res: ServerResponse, { service, path, prefix }: Admitted): Promise<void> {
    const serviceTrack = this.traffic.startService(service.name);
    const client = new AbortController();
    let clientGone = false;
    /** The replica's side ended first: the client is cut off on purpose, it did not go away. */
    let cut = false;
    res.once('close', () => {
      if (res.writableFinished || cut) return;
      clientGone = true;
      client.abort();
    });
    const picked = await this.connectReplica(service, client.signal);
    if ('error' in picked) {
      serviceTrack.end(!clientGone);
      if (!clientGone) refuse(res, { status: 502, code: 'REPLICA_UNREACHABLE', message: picked.error });
      return;
    }
    const { socket, track } = picked;
    if (clientGone) {
      socket.destroy();
      track.end(false);
      serviceTrack.end(false);
      return;
    }
    this.detached.add(socket);
    socket.once('close', () => this.detached.delete(socket));
    let replicaFailed = false;
    const end = (error: boolean) => {
      track.end(error);
      serviceTrack.end(error);
    };
    const upstream = httpRequest({
      // No agent: the pipe connection is this request's alone, closed with it. A keep-alive pool per
      // replica would save the connect and hello round trip per request; worth it if latency says so.
      createConnection: () => socket,
      method: req.method,
      path,
      setHost: false,
      headers: upstreamRequestHeaders(req.rawHeaders, { remoteAddress: req.socket.remoteAddress ?? '', host: req.headers.host, prefix, trustForwarded: isLoopbackHost(req.socket.remoteAddress ?? ''), upgrade: false }),
    });
    client.signal.addEventListener('abort', () => {
      upstream.destroy();
      end(false);
    }, { once: true });
    upstream.on('response', (upRes) => {
      track.head();
      serviceTrack.head();
      const status = upRes.statusCode ?? 502;
      res.writeHead(status, upRes.statusMessage, downstreamResponseHeaders(upRes.rawHeaders));
      // The head goes out now, not with the first body chunk: a stream's client sees it at once.
      res.flushHeaders();
      upRes.on('error', () => undefined); // seen as an incomplete close below
      upRes.once('close', () => {
        if (clientGone || upRes.complete) return;
        // The replica's side ended before its response did: the client gets a cut-off, not a
        // response that looks complete.
        cut = true;
        res.destroy();
        end(true);
      });
      res.once('finish', () => end(status >= 500));
      upRes.pipe(res);
    });
    upstream.on('error', (err) => {
      if (clientGone || replicaFailed) return;
      replicaFailed = true;
      this.log.warn({ service: service.name, taskId: picked.replica.taskId, err: errorMessage(err) }, 'replica connection failed');
      if (res.headersSent) {
        cut = true;
        res.destroy();
      } else {
        refuse(res, { status: 502, code: 'REPLICA_FAILED', message: `replica ${picked.replica.index} of service "${service.name}" closed the connection before answering: ${errorMessage(err)}` });
      }
      end(true);
    });
    // A client that aborts its upload is seen by res 'close' above; its error needs no second say.
    req.on('error', () => undefined);
    req.pipe(upstream);
  }

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.active++;
    this.detached.add(socket);
    socket.once('close', () => {
      this.active--;
      this.detached.delete(socket);
    });
    socket.on('error', () => socket.destroy());
    const refusal = this.overloaded() ?? this.admit(req);
    if ('status' in refusal) return refuseRaw(socket, refusal);
    this.relay(req, socket, head, refusal).catch((err: unknown) => {
      this.log.error({ err: errorMessage(err) }, 'gateway upgrade failed');
      socket.destroy();
    });
  }

  /** An Upgrade: the request head goes to the replica as it came (less the token), then bytes both ways. */
  private async relay(req: IncomingMessage, client: Duplex, head: Buffer, { service, path, prefix }: Admitted): Promise<void> {
    const serviceTrack = this.traffic.startService(service.name);
    const gone = new AbortController();
    client.once('close', () => gone.abort());
    const picked = await this.connectReplica(service, gone.signal);
    if ('error' in picked) {
      serviceTrack.end(!gone.signal.aborted);
      if (!gone.signal.aborted) refuseRaw(client, { status: 502, code: 'REPLICA_UNREACHABLE', message: picked.error });
      return;
    }
    const { socket: pipe, track } = picked;
    if (gone.signal.aborted) {
      pipe.destroy();
      track.end(false);
      serviceTrack.end(false);
      return;
    }
    this.detached.add(pipe);
    let answered = false;
    pipe.once('data', () => {
      answered = true;
      track.head();
      serviceTrack.head();
    });
    pipe.once('close', () => {
      this.detached.delete(pipe);
      client.destroy();
      // A replica that closed without a byte of answer failed the upgrade.
      track.end(!answered);
      serviceTrack.end(!answered);
    });
    pipe.on('error', () => pipe.destroy());
    client.once('close', () => pipe.destroy());
    const headers = upstreamRequestHeaders(req.rawHeaders, { remoteAddress: req.socket.remoteAddress ?? '', host: req.headers.host, prefix, trustForwarded: isLoopbackHost(req.socket.remoteAddress ?? ''), upgrade: true });
    let text = `${req.method} ${path} HTTP/1.1\r\n`;
    // Node's parser has already refused CR, LF and NUL in names and values: they are safe to write.
    for (let i = 0; i + 1 < headers.length; i += 2) text += `${headers[i]}: ${headers[i + 1]}\r\n`;
    pipe.write(`${text}\r\n`);
    if (head.length > 0) pipe.write(head);
    client.pipe(pipe);
    pipe.pipe(client);
  }
}

/** `/metrics`, with or without a query (a scraper's cache buster); nothing below it. */
function isMetricsTarget(target: string | undefined): boolean {
  return target === METRICS_PATH || (target?.startsWith(`${METRICS_PATH}?`) ?? false);
}

function errorBody(r: Refusal): string {
  return `${JSON.stringify({ error: { code: r.code, message: r.message } })}\n`;
}

function refuse(res: ServerResponse, r: Refusal): void {
  if (res.headersSent || res.destroyed) return;
  const body = errorBody(r);
  res.writeHead(r.status, { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...r.headers });
  res.end(body);
}

/** The same answer on an upgrade's raw socket, which has no ServerResponse; then the socket closes. */
function refuseRaw(socket: Duplex, r: Refusal): void {
  if (socket.destroyed) return;
  const body = errorBody(r);
  const headers = { 'Content-Type': 'application/json; charset=utf-8', 'Content-Length': String(Buffer.byteLength(body)), 'Cache-Control': 'no-store', Connection: 'close', ...r.headers };
  let text = `HTTP/1.1 ${r.status} ${STATUS_CODES[r.status] ?? ''}\r\n`;
  for (const [k, v] of Object.entries(headers)) text += `${k}: ${v}\r\n`;
  socket.end(`${text}\r\n${body}`);
}
