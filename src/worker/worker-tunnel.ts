// The worker's WireGuard tunnel to its master: enrollment on first start (key pair made here,
// private key kept in <data>/wg/private.key with mode 0600), the interface brought up from the
// saved config on every start, health checks that restart a stale tunnel with backoff, mesh
// peers, and removal on stop.
import { mkdir, readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import { backoffDelay } from '../common/backoff.js';
import type { Clock } from '../common/clock.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { NodeFacts, TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import { TunnelConfig } from '../protocol/gen/hivemind/v1/enroll.js';
import type { MeshPeers } from '../protocol/gen/hivemind/v1/node.js';
import { MeshPeerSet } from '../tunnel/mesh-peers.js';
import { parseSubnet } from '../tunnel/subnet.js';
import { decodeJoinToken, isJoinToken } from '../tunnel/join-token.js';
import { HandshakeTimeoutError } from '../tunnel/tunnel-errors.js';
import { generateWgKeyPair, isWgKey, wgPublicKeyOf } from '../tunnel/wg-keys.js';
import type { WgInterfaceSpec, WgPeerSpec } from '../tunnel/wg-spec.js';
import type { WgImplementation, WireGuardTool } from '../tunnel/wireguard-tool.js';
import { enrollWithAnyMaster, type Enroller } from './enroll-client.js';
import { saveIdentity } from './identity-file.js';

export const TUNNEL_FILE = 'tunnel.json';
/** WireGuard re-handshakes every 2 minutes while packets flow; past 3 the tunnel is stale. */
export const STALE_HANDSHAKE_MS = 180_000;
/**
 * Least time the tunnel stays on one master before a lost master session moves it on: room for
 * the handshake and the registration with the master it was just pointed at. A killed master
 * process on a live host still hand-shakes (the kernel's WireGuard answers), so the session's
 * loss is the faster sign, and this bound keeps a flapping session from spinning the tunnel.
 */
export const MASTER_MOVE_MIN_MS = 15_000;

export interface WorkerTunnelOptions {
  dataDir: string;
  interfaceName: string;
  /** How long up() waits for the first handshake. Default 10 s. */
  handshakeTimeoutMs?: number;
  healthIntervalMs?: number;
}

export interface WorkerTunnelDeps {
  tool: WireGuardTool;
  clock: Clock;
  log: Logger;
}

interface SavedTunnel {
  nodeId: string;
  config: ReturnType<typeof TunnelConfig.toJSON>;
}

export class WorkerTunnel {
  private implementation: WgImplementation | undefined;
  private meshPeers: MeshPeerSet | undefined;
  /** Mesh changes reach the interface one after another, in the order the master sent them. */
  private meshQueue: Promise<void> = Promise.resolve();
  private state: 'down' | 'up' | 'stale' | 'restarting' = 'down';
  private healthTimer: NodeJS.Timeout | undefined;
  private restarts = 0;
  private closed = false;
  /** Index in masterEndpoints of the master peer's endpoint now. */
  private endpointIndex = 0;
  /** When the master peer last got its endpoint (up, or a move). */
  private endpointSince = 0;

  private constructor(
    private readonly opts: WorkerTunnelOptions,
    private readonly deps: WorkerTunnelDeps,
    readonly nodeId: string,
    readonly config: TunnelConfig,
    private readonly privateKey: string,
  ) {}

  /** True when this data dir holds an enrollment, or the token is a join token. */
  static async wanted(dataDir: string, token: string | undefined): Promise<boolean> {
    if (token && isJoinToken(token)) return true;
    return (await readFile(join(dataDir, TUNNEL_FILE)).then(() => true, () => false));
  }

  /**
   * Loads the saved enrollment, or enrolls with the join token (first start). Never enrolls twice:
   * a data dir with an enrollment ignores the token.
   */
  static async open(opts: WorkerTunnelOptions, deps: WorkerTunnelDeps & { enroller: Enroller }, first: { token?: string; name?: string; facts: () => Promise<NodeFacts> }): Promise<WorkerTunnel> {
    const dir = join(opts.dataDir, 'wg');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keyFile = join(dir, 'private.key');
    const saved = await readFile(join(opts.dataDir, TUNNEL_FILE), 'utf8').then((s) => JSON.parse(s) as SavedTunnel, (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw new ConfigError(`${join(opts.dataDir, TUNNEL_FILE)} is unreadable (${err.message}); restore it from a backup or enroll this node again with a fresh data dir`);
    });
    if (saved) {
      const privateKey = (await readFile(keyFile, 'utf8')).trim();
      if (!isWgKey(privateKey)) throw new ConfigError(`${keyFile} does not hold a WireGuard private key`);
      return new WorkerTunnel(opts, deps, saved.nodeId, TunnelConfig.fromJSON(saved.config), privateKey);
    }
    if (!first.token) throw new ConfigError(`this node is not enrolled yet (${opts.dataDir}): pass the join token from \`hivemind token create\` on the master`);
    const token = decodeJoinToken(first.token);
    const keys = await loadOrCreateKey(keyFile);
    const res = await enrollWithAnyMaster(deps.enroller, token, { name: first.name ?? '', facts: await first.facts(), wgPublicKey: keys.publicKey }, deps.log);
    if (!res.tunnel) throw new ConfigError('the master answered the enrollment without a tunnel configuration');
    await saveIdentity(opts.dataDir, { nodeId: res.nodeId, credential: res.nodeCredential, masterAddress: res.tunnel.masterGrpcAddress, registeredAt: deps.clock.now() });
    const file = join(opts.dataDir, TUNNEL_FILE);
    await writeFile(file, JSON.stringify({ nodeId: res.nodeId, config: TunnelConfig.toJSON(res.tunnel) } satisfies SavedTunnel, null, 2) + '\n', { mode: 0o600 });
    await chmod(file, 0o600);
    deps.log.info({ nodeId: res.nodeId, address: res.tunnel.address }, 'enrolled with the master');
    return new WorkerTunnel(opts, deps, res.nodeId, res.tunnel, keys.privateKey);
  }

  get masterGrpcAddress(): string {
    return this.config.masterGrpcAddress;
  }

  /**
   * Every master's WireGuard endpoint (masters sharing one store have one hub key and one tunnel
   * address, so only the endpoint changes), in order.
   */
  get masterEndpoints(): string[] {
    return [this.config.masterEndpoint, ...this.config.otherMasterEndpoints];
  }

  /** The master peer's endpoint now. */
  get masterEndpoint(): string {
    return this.masterEndpoints[this.endpointIndex]!;
  }

  /** Points the master peer at the next master's endpoint (round and round); false with one master. */
  private moveToNextMaster(why: string): boolean {
    const all = this.masterEndpoints;
    if (all.length < 2) return false;
    const from = this.masterEndpoint;
    this.endpointIndex = (this.endpointIndex + 1) % all.length;
    this.endpointSince = this.deps.clock.now();
    this.deps.log.warn({ from, to: this.masterEndpoint, why }, 'tunnel: moving the master peer to the next master');
    return true;
  }

  private spec(): WgInterfaceSpec {
    const master: WgPeerSpec = { publicKey: this.config.masterPublicKey, endpoint: this.masterEndpoint, allowedIps: this.config.allowedIps, persistentKeepalive: this.config.persistentKeepalive };
    const set = this.meshPeers;
    const mesh: WgPeerSpec[] = set ? set.values().map((p) => set.wgPeer(p)) : [];
    const spec: WgInterfaceSpec = { name: this.opts.interfaceName, privateKey: this.privateKey, address: this.config.address, peers: [master, ...mesh] };
    if (this.config.mesh && this.config.listenPort) spec.listenPort = this.config.listenPort;
    return spec;
  }

  /**
   * Brings the interface up and waits for the first handshake with the master; with several
   * masters, one after the other until one answers (each gets the whole handshake timeout).
   */
  async up(): Promise<void> {
    for (let tried = 1; ; tried++) {
      try {
        return await this.upOnce();
      } catch (err) {
        if (!(err instanceof HandshakeTimeoutError) || tried >= this.masterEndpoints.length) throw err;
        this.moveToNextMaster('no handshake');
        await this.deps.tool.down(this.opts.interfaceName);
      }
    }
  }

  private async upOnce(): Promise<void> {
    this.implementation = await this.deps.tool.up(this.spec());
    const started = this.deps.clock.now();
    const timeout = this.opts.handshakeTimeoutMs ?? 10_000;
    for (;;) {
      const st = await this.deps.tool.show(this.opts.interfaceName);
      const master = st?.peers.find((p) => p.publicKey === this.config.masterPublicKey);
      if (master && master.latestHandshakeMs > 0) break;
      if (this.deps.clock.now() - started > timeout) throw new HandshakeTimeoutError(this.opts.interfaceName, this.masterEndpoint, timeout);
      await new Promise((r) => setTimeout(r, 50));
    }
    this.state = 'up';
    this.endpointSince = this.deps.clock.now();
    this.deps.log.info({ interface: this.opts.interfaceName, address: this.config.address, implementation: this.implementation, masterEndpoint: this.masterEndpoint }, 'tunnel up');
  }

  /**
   * The worker lost its master session. With several masters, and after MASTER_MOVE_MIN_MS on the
   * current one, the master peer is pointed at the next master's endpoint (the interface stays up:
   * only the peer changes). True when it moved.
   */
  async masterUnreachable(why: string): Promise<boolean> {
    if (this.closed || this.state !== 'up' || this.masterEndpoints.length < 2) return false;
    if (this.deps.clock.now() - this.endpointSince < MASTER_MOVE_MIN_MS) return false;
    this.moveToNextMaster(why);
    await this.deps.tool.syncPeers(this.spec());
    return true;
  }

  /** Periodic health check: a tunnel without a handshake for STALE_HANDSHAKE_MS is restarted with backoff. */
  startHealthChecks(): void {
    const every = this.opts.healthIntervalMs ?? 30_000;
    const tick = async () => {
      if (this.closed) return;
      try {
        const st = await this.status();
        // 'restarting': the last restart failed (no master answered); try again.
        if (st.state === 'stale' || st.state === 'down' || st.state === 'restarting') {
          this.state = 'restarting';
          this.deps.log.warn({ interface: this.opts.interfaceName, lastHandshakeMs: st.latestHandshakeMs }, 'tunnel stale; restarting it');
          // The master this tunnel led to stopped answering: the next one is the better bet.
          if (st.state === 'stale') this.moveToNextMaster(`no handshake for over ${STALE_HANDSHAKE_MS / 1000} s`);
          await this.deps.tool.down(this.opts.interfaceName);
          await this.up();
          this.restarts = 0;
        }
      } catch (err) {
        this.restarts++;
        this.deps.log.warn({ err: errorMessage(err), restarts: this.restarts }, 'tunnel restart failed; retrying');
      }
      if (!this.closed) this.healthTimer = setTimeout(() => void tick(), this.restarts > 0 ? backoffDelay(this.restarts, { initialMs: 1000, maxMs: 60_000, factor: 2 }) : every);
    };
    this.healthTimer = setTimeout(() => void tick(), every);
    this.healthTimer.unref();
  }

  async status(): Promise<TunnelStatus> {
    const st = await this.deps.tool.show(this.opts.interfaceName).catch(() => undefined);
    const master = st?.peers.find((p) => p.publicKey === this.config.masterPublicKey);
    const hs = master?.latestHandshakeMs ?? 0;
    const state = !st ? 'down' : this.state === 'restarting' ? 'restarting' : hs > 0 && this.deps.clock.now() - hs > STALE_HANDSHAKE_MS ? 'stale' : 'up';
    return {
      interface: this.opts.interfaceName,
      address: this.config.address,
      masterEndpoint: this.masterEndpoint,
      latestHandshakeMs: hs,
      rxBytes: master?.rxBytes ?? 0,
      txBytes: master?.txBytes ?? 0,
      state,
      implementation: this.implementation ?? '',
    };
  }

  /**
   * Mesh mode: peer directly with the other nodes the master announced. A full list re-syncs the
   * interface; a delta changes only the peers it names. A message outside the bounds
   * (MeshPeerSet) is refused whole with MeshPeersRefusedError.
   */
  setMeshPeers(msg: MeshPeers): Promise<void> {
    if (!this.config.mesh) return Promise.resolve();
    let set: MeshPeerSet;
    let applied: ReturnType<MeshPeerSet['apply']>;
    try {
      set = this.meshPeers ??= new MeshPeerSet({
        // The master routes its whole subnet to us (allowedIps[0]); peers must be hosts inside it.
        subnet: parseSubnet(this.config.allowedIps[0] ?? this.config.address),
        selfNodeId: this.nodeId,
        selfPublicKey: wgPublicKeyOf(this.privateKey),
        selfTunnelIp: this.config.address.split('/')[0]!,
        masterPublicKey: this.config.masterPublicKey,
        persistentKeepalive: this.config.persistentKeepalive,
      });
      applied = set.apply(msg);
    } catch (err) {
      return Promise.reject(err);
    }
    const run = async () => {
      if (applied.kind === 'full') await this.deps.tool.syncPeers(this.spec());
      else if (applied.change.set.length + applied.change.remove.length > 0) {
        await this.deps.tool.updatePeers(this.opts.interfaceName, applied.change).catch(async (err: unknown) => {
          // The interface may have drifted from the set: re-apply all of it once.
          this.deps.log.warn({ err: errorMessage(err) }, 'changing mesh peers failed; re-applying the whole set');
          await this.deps.tool.syncPeers(this.spec());
        });
      }
      this.deps.log.info({ peers: set.size, delta: msg.delta, changed: applied.kind === 'full' ? undefined : applied.change.set.length + applied.change.remove.length }, 'mesh peers updated');
    };
    const next = this.meshQueue.then(run, run);
    this.meshQueue = next.catch(() => undefined);
    return next;
  }

  /** Removes the interface: nothing is left behind on the host. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.healthTimer) clearTimeout(this.healthTimer);
    await this.deps.tool.down(this.opts.interfaceName);
    this.state = 'down';
    this.deps.log.info({ interface: this.opts.interfaceName }, 'tunnel removed');
  }
}

async function loadOrCreateKey(keyFile: string): Promise<{ privateKey: string; publicKey: string }> {
  try {
    const privateKey = (await readFile(keyFile, 'utf8')).trim();
    if (isWgKey(privateKey)) return { privateKey, publicKey: wgPublicKeyOf(privateKey) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const kp = generateWgKeyPair();
  await writeFile(keyFile, kp.privateKey + '\n', { mode: 0o600 });
  await chmod(keyFile, 0o600);
  return kp;
}
