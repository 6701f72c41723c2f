// The master's configuration: file section "master", HIVEMIND_* env, `hivemind master start` flags.
// Defaults: MASTER_DEFAULTS (config/defaults.ts), the one place they are written.
import { join } from 'node:path';
import { z } from 'zod';
import { ConfigError } from '../common/errors.js';
import { formatDuration } from '../common/units.js';
import { redactUrl } from '../master/sql/sql-errors.js';
import { GATEWAY_DEFAULTS, MASTER_DEFAULTS, MAX_RPC_THREADS, MISSED_REPORTS_OFFLINE, nodeTimeoutMs, nodeTimeoutTooShort } from './defaults.js';
import { hivemindHome } from './paths.js';
import { compileSection, zBool, zAddress, zDurationMs, zInt, zLogLevel, zMasterList, zSize, zWgInterface, type ConfigInput, type FieldSource } from './layered-config.js';
import { MAX_MASTERS } from './master-list.js';
import { DEFAULT_LEASE_MS } from '../master/lease/lease-timing.js';

const schema = z
  .object({
    /** gRPC listen address (loopback only). */
    listen: zAddress.default(MASTER_DEFAULTS.listen),
    /** Database, inputs, results, logs. Default $HIVEMIND_HOME/master. */
    dataDir: z.string().min(1).optional(),
    /** Where the master keeps its state: a postgres:// URL, or unset for SQLite at <dataDir>/master.db. */
    store: z.string().min(1).optional(),
    /** With PostgreSQL: how long the master lease lasts (a standby takes over within about this long). */
    lease: zDurationMs('lease').default(DEFAULT_LEASE_MS),
    /** Interval workers report at. */
    reportInterval: zDurationMs('report interval').default(MASTER_DEFAULTS.reportIntervalMs),
    /** A node silent this long is offline and its tasks are requeued. Default MISSED_REPORTS_OFFLINE report intervals. */
    nodeTimeout: zDurationMs('node timeout').optional(),
    /** Attempts per task before it fails for good when nodes are lost. */
    maxAttempts: zInt(1, 100).default(MASTER_DEFAULTS.maxAttempts),
    logLevel: zLogLevel.default(MASTER_DEFAULTS.logLevel),
    /** Tunnel mode: the public UDP HOST:PORT of the master's WireGuard interface. */
    wgEndpoint: zAddress.optional(),
    /** Tunnel subnet. */
    wgSubnet: z.string().regex(/^\d+\.\d+\.\d+\.\d+\/\d+$/, { message: 'expected an IPv4 CIDR, e.g. 10.8.0.0/24' }).default(MASTER_DEFAULTS.wgSubnet),
    wgInterface: zWgInterface,
    /** Tunnel mode: where the TLS enrollment endpoint listens (the only public service). */
    enrollListen: zAddress.default(MASTER_DEFAULTS.enrollListen),
    /** Tunnel mode: port of the node service on the master's tunnel address. */
    nodePort: zInt(1, 65535).default(MASTER_DEFAULTS.nodePort),
    /** Tunnel mode: workers peer directly with each other (default: through the master, a hub). */
    mesh: zBool.default(MASTER_DEFAULTS.mesh),
    /**
     * Tunnel mode, masters sharing one store: the other masters' public WireGuard endpoints
     * (their --wg-endpoint). Join tokens and node tunnels list them so nodes move on when this
     * master stops answering; a peer's enrollment endpoint is its host with this master's
     * enrollment port (the masters are set up alike: one TLS identity, one hub key).
     */
    peerMasters: zMasterList.optional(),
    /** Largest data set `hivemind data put` may store. */
    maxData: zSize('max data size').default(MASTER_DEFAULTS.maxDataBytes),
    /** The HTTP gateway to services (plain HTTP: TLS is a reverse proxy's), or "off". */
    gatewayListen: z
      .string()
      .refine((v) => v === 'off' || zAddress.safeParse(v).success, { message: 'expected HOST:PORT or off, e.g. 127.0.0.1:8088' })
      .default(GATEWAY_DEFAULTS.listen),
    /** The operations listener (/healthz, /readyz, /metrics), or "off". Port 0: a free port, logged. */
    metricsListen: z
      .string()
      .refine((v) => v === 'off' || zAddress.safeParse(v).success, { message: 'expected HOST:PORT or off, e.g. 127.0.0.1:9464' })
      .default(MASTER_DEFAULTS.metricsListen),
    /** Threads holding the gRPC connections (0: the main thread). */
    rpcThreads: zInt(0, MAX_RPC_THREADS).default(MASTER_DEFAULTS.rpcThreads),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.nodeTimeout !== undefined && nodeTimeoutTooShort(c.nodeTimeout, c.reportInterval)) {
      ctx.addIssue({
        code: 'custom',
        path: ['nodeTimeout'],
        message: `${formatDuration(c.nodeTimeout)} is shorter than the report interval (${formatDuration(c.reportInterval)}): nodes reporting on time would be called offline between two reports; use at least the report interval (default ${MISSED_REPORTS_OFFLINE} of them)`,
      });
    }
  });

export interface MasterConfig {
  listen: string;
  dataDir: string;
  /** SQLite at <dataDir>/master.db, or PostgreSQL (the URL holds the password: log `shown`). */
  store: MasterStoreChoice;
  reportIntervalMs: number;
  /** With PostgreSQL: the master lease's length (ignored with SQLite). */
  leaseMs: number;
  /** A node silent this long is offline and its tasks are requeued. */
  nodeTimeoutMs: number;
  maxAttempts: number;
  logLevel: string;
  maxDataBytes: number;
  /** host:port of the HTTP gateway to services, or "off". */
  gatewayListen: string;
  /** host:port of the operations listener (/healthz, /readyz, /metrics), or "off". */
  metricsListen: string;
  /** Threads holding the gRPC connections of the node and admin services; 0: the main thread. */
  rpcThreads: number;
  tunnel?: { endpoint: string; subnet: string; interfaceName: string; enrollListen: string; nodePort: number; mesh: boolean; peerEndpoints: string[] };
}

const fields: Record<string, FieldSource> = {
  listen: { env: 'HIVEMIND_LISTEN', flag: 'listen' },
  dataDir: { env: 'HIVEMIND_DATA_DIR', flag: 'dataDir' },
  store: { env: 'HIVEMIND_STORE', flag: 'store' },
  reportInterval: { env: 'HIVEMIND_REPORT_INTERVAL', flag: 'reportInterval' },
  nodeTimeout: { env: 'HIVEMIND_NODE_TIMEOUT', flag: 'nodeTimeout' },
  lease: { env: 'HIVEMIND_LEASE', flag: 'lease' },
  maxAttempts: { env: 'HIVEMIND_MAX_ATTEMPTS', flag: 'maxAttempts' },
  logLevel: { env: 'HIVEMIND_LOG_LEVEL', flag: 'logLevel' },
  wgEndpoint: { env: 'HIVEMIND_WG_ENDPOINT', flag: 'wgEndpoint' },
  wgSubnet: { env: 'HIVEMIND_WG_SUBNET', flag: 'wgSubnet' },
  wgInterface: { env: 'HIVEMIND_WG_INTERFACE', flag: 'wgInterface' },
  enrollListen: { env: 'HIVEMIND_ENROLL_LISTEN', flag: 'enrollListen' },
  nodePort: { env: 'HIVEMIND_NODE_PORT', flag: 'nodePort' },
  mesh: { env: 'HIVEMIND_MESH', flag: 'mesh' },
  peerMasters: { env: 'HIVEMIND_PEER_MASTERS', flag: 'peerMasters' },
  maxData: { env: 'HIVEMIND_MAX_DATA', flag: 'maxData' },
  gatewayListen: { env: 'HIVEMIND_GATEWAY_LISTEN', flag: 'gatewayListen' },
  metricsListen: { env: 'HIVEMIND_METRICS_LISTEN', flag: 'metricsListen' },
  rpcThreads: { env: 'HIVEMIND_RPC_THREADS', flag: 'rpcThreads' },
};

export type MasterStoreChoice = { kind: 'sqlite'; path: string } | { kind: 'postgres'; url: string; shown: string };

/**
 * `--store`: a postgres:// (or postgresql://) URL with host and database, checked here once so a
 * typo is a config error, not a connection failure later. The password never appears in messages.
 */
export function compileStoreChoice(text: string | undefined, dataDir: string): MasterStoreChoice {
  if (text === undefined || text === 'sqlite') return { kind: 'sqlite', path: join(dataDir, 'master.db') };
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    throw new ConfigError('master: --store is not a URL; expected postgres://USER:PASSWORD@HOST:PORT/DATABASE (or leave it out for SQLite in the data dir)');
  }
  const shown = redactUrl(text);
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new ConfigError(`master: --store ${shown}: only postgres:// URLs are supported (or leave it out for SQLite in the data dir)`);
  }
  if (!u.hostname || u.pathname.length <= 1) {
    throw new ConfigError(`master: --store ${shown}: give the host and the database, e.g. postgres://hivemind:PASSWORD@db.example:5432/hivemind`);
  }
  return { kind: 'postgres', url: text, shown };
}

export function compileMasterConfig(input: ConfigInput): MasterConfig {
  const c = compileSection('master', schema, fields, input);
  if (c.peerMasters && !c.wgEndpoint) {
    throw new ConfigError('master: --peer-masters needs --wg-endpoint (tunnel mode); direct-mode nodes and the CLI list every master in their own --master a,b');
  }
  const dataDir = c.dataDir ?? join(hivemindHome(input.env), 'master');
  return {
    listen: c.listen,
    dataDir,
    store: compileStoreChoice(c.store, dataDir),
    reportIntervalMs: c.reportInterval,
    leaseMs: c.lease,
    nodeTimeoutMs: nodeTimeoutMs(c.reportInterval, c.nodeTimeout),
    maxAttempts: c.maxAttempts,
    logLevel: c.logLevel,
    maxDataBytes: c.maxData,
    gatewayListen: c.gatewayListen,
    metricsListen: c.metricsListen,
    rpcThreads: c.rpcThreads,
    ...(c.wgEndpoint
      ? {
          tunnel: {
            endpoint: c.wgEndpoint,
            subnet: c.wgSubnet,
            interfaceName: c.wgInterface,
            enrollListen: c.enrollListen,
            nodePort: c.nodePort,
            mesh: c.mesh,
            peerEndpoints: checkPeerMasters(c.peerMasters ?? [], c.wgEndpoint),
          },
        }
      : {}),
  };
}

/** The other masters: not this one, and with it at most MAX_MASTERS in all. */
function checkPeerMasters(peers: string[], own: string): string[] {
  if (peers.includes(own)) throw new ConfigError(`master: --peer-masters lists this master's own --wg-endpoint ${own}; list only the other masters`);
  if (peers.length > MAX_MASTERS - 1) throw new ConfigError(`master: --peer-masters lists ${peers.length} masters; with this one that is over ${MAX_MASTERS}`);
  return peers;
}
