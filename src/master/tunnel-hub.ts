// The master's side of the WireGuard network: its own interface (the hub), one peer per enrolled
// node with a stable /32, and the tunnel config each node gets. Peers are read from the store once
// at start (a restarted master needs no operator action) and then kept in memory: an enrollment
// or a removal changes that one peer on the interface, so its cost does not grow with the network.
import { portOf } from '../common/address.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CommandRunner } from '../tunnel/command-runner.js';
import { wgPublicKeyOf } from '../tunnel/wg-keys.js';
import { FileHubKey, type HubKeySource } from './hub-key.js';
import type { WgInterfaceSpec, WgInterfaceStatus, WgPeerChange, WgPeerSpec } from '../tunnel/wg-spec.js';
import type { WgImplementation, WireGuardTool } from '../tunnel/wireguard-tool.js';
import { AddressPool } from '../tunnel/address-pool.js';
import { hostAddress, parseSubnet, type Subnet } from '../tunnel/subnet.js';
import type { TunnelConfig } from '../protocol/gen/hivemind/v1/enroll.js';
import type { MeshPeer } from '../protocol/gen/hivemind/v1/node.js';

export interface TunnelHubOptions {
  /** WireGuard interface name on the master. */
  interfaceName: string;
  /** Tunnel subnet; the master takes its first address. */
  subnet: string;
  /** Public UDP host:port of the master's WireGuard interface, as workers dial it. */
  endpoint: string;
  /** The other masters' WireGuard endpoints (one store, the same hub key and address): nodes move on to them. */
  otherEndpoints?: readonly string[];
  /** Port of the worker-facing gRPC service on the master's tunnel address. */
  nodePort: number;
  /** Workers peer directly with each other (the master sends MeshPeers). */
  mesh: boolean;
  /** Seconds. Default 25. */
  keepaliveSeconds?: number;
  /** Where the hub's key file is kept when no other key source is given (SQLite's single master). */
  dataDir: string;
}

/** One enrolled node as the hub knows it. */
export interface HubPeer {
  nodeId: string;
  publicKey: string;
  tunnelIp: string;
}

/** What the hub reads from the store: when it is built, and again when a standby master takes over (reloadPeers). */
export interface HubPeerSource {
  tunnelPeers(): HubPeer[];
}

export class TunnelHub {
  private implementation: WgImplementation | undefined;
  /** Enrolled nodes by id, in enrollment order. */
  private readonly peers = new Map<string, HubPeer>();
  private showRunning: Promise<WgInterfaceStatus | undefined> | undefined;
  private showQueued: Promise<WgInterfaceStatus | undefined> | undefined;

  private constructor(
    private readonly opts: TunnelHubOptions,
    private readonly subnet: Subnet,
    private readonly privateKey: string,
    readonly publicKey: string,
    private readonly tool: WireGuardTool,
    private readonly runner: CommandRunner,
    private pool: AddressPool,
    peers: HubPeer[],
    private readonly log: Logger,
  ) {
    for (const p of peers) this.peers.set(p.nodeId, p);
  }

  static async create(opts: TunnelHubOptions, deps: { tool: WireGuardTool; runner: CommandRunner; store: HubPeerSource; key?: HubKeySource; log: Logger }): Promise<TunnelHub> {
    const subnet = parseSubnet(opts.subnet);
    if (!/^[^\s]+:\d{1,5}$/.test(opts.endpoint)) throw new ConfigError(`--wg-endpoint: "${opts.endpoint}" is not HOST:PORT`);
    // With PostgreSQL the key is the database's (every master brings up the same hub); else the data dir's file.
    const privateKey = await (deps.key ?? new FileHubKey(opts.dataDir)).privateKey();
    const peers = deps.store.tunnelPeers();
    const pool = AddressPool.load(subnet, peers.map((p) => p.tunnelIp));
    const log = deps.log.child({ component: 'tunnel-hub' });
    const outside = peers.filter((p) => !pool.has(p.tunnelIp));
    if (outside.length > 0) {
      // A changed --wg-subnet: those nodes keep their saved address and cannot reach this one.
      log.warn({ nodes: outside.length, example: outside[0]!.tunnelIp, subnet: subnet.cidr }, `${outside.length} enrolled nodes have tunnel addresses outside --wg-subnet ${subnet.cidr} (e.g. ${outside[0]!.tunnelIp}): start the master with the subnet they enrolled in, or remove them and enroll them again`);
    }
    return new TunnelHub(opts, subnet, privateKey, wgPublicKeyOf(privateKey), deps.tool, deps.runner, pool, peers, log);
  }

  get masterIp(): string {
    return hostAddress(this.subnet, 1);
  }

  get subnetCidr(): string {
    return this.subnet.cidr;
  }

  /** Where the worker-facing gRPC service listens: only on the tunnel. */
  get nodeServiceAddress(): string {
    return `${this.masterIp}:${this.opts.nodePort}`;
  }

  get listenPort(): number {
    return portOf(this.opts.endpoint);
  }

  get mesh(): boolean {
    return this.opts.mesh;
  }

  get peerCount(): number {
    return this.peers.size;
  }

  private spec(): WgInterfaceSpec {
    const peers: WgPeerSpec[] = [...this.peers.values()].map(peerSpec);
    return { name: this.opts.interfaceName, privateKey: this.privateKey, address: `${this.masterIp}/${this.subnet.prefix}`, listenPort: this.listenPort, peers };
  }

  /** Brings the interface up with every known node as a peer; forwarding lets nodes reach each other through the hub. */
  /**
   * Reads the enrolled nodes from the store again, before start(): a standby master built its hub
   * long before it takes over, and the active master enrolled and removed nodes meanwhile.
   */
  reloadPeers(source: HubPeerSource): void {
    const peers = source.tunnelPeers();
    this.peers.clear();
    for (const p of peers) this.peers.set(p.nodeId, p);
    this.pool = AddressPool.load(this.subnet, peers.map((p) => p.tunnelIp));
  }

  async start(): Promise<void> {
    const spec = this.spec();
    this.implementation = await this.tool.up(spec);
    const fwd = await this.runner.run('sysctl', ['-w', 'net.ipv4.ip_forward=1']).catch((err: unknown) => ({ exitCode: 1, stderr: errorMessage(err), stdout: '' }));
    if (fwd.exitCode !== 0) this.log.warn({ err: fwd.stderr.trim() }, 'could not enable IPv4 forwarding: nodes will reach the master but not each other through it');
    this.log.info({ interface: spec.name, address: spec.address, peers: spec.peers.length, implementation: this.implementation, endpoint: this.opts.endpoint }, 'WireGuard hub up');
  }

  /** Takes a free tunnel address (O(1)); give it back with release() if the enrollment is not stored. */
  allocate(): string {
    return this.pool.allocate();
  }

  /** Gives back an address from allocate() that no peer took (the enrollment was rolled back). */
  release(tunnelIp: string): void {
    this.pool.release(tunnelIp);
  }

  /** A newly enrolled node: one `wg set … peer KEY allowed-ips IP/32`. */
  async addPeer(peer: HubPeer): Promise<void> {
    this.peers.set(peer.nodeId, peer);
    await this.change({ set: [peerSpec(peer)], remove: [] });
  }

  /** A removed node: one `wg set … peer KEY remove`, and its address becomes free. False when unknown. */
  async removePeer(nodeId: string): Promise<boolean> {
    const peer = this.peers.get(nodeId);
    if (!peer) return false;
    this.peers.delete(nodeId);
    this.pool.release(peer.tunnelIp);
    await this.change({ set: [], remove: [peer.publicKey] });
    return true;
  }

  /**
   * Applies a per-peer change; if `wg set` fails, the interface may have drifted from the
   * in-memory set, so the whole set is re-applied once (syncconf) as a repair. Only a failed
   * repair reaches the caller.
   */
  private async change(change: WgPeerChange): Promise<void> {
    try {
      await this.tool.updatePeers(this.opts.interfaceName, change);
    } catch (err) {
      this.log.warn({ err: errorMessage(err), peers: this.peers.size }, 'changing one peer failed; re-applying the whole peer set');
      await this.syncPeers();
    }
  }

  /** Re-applies the whole in-memory peer set (a repair; start() sets it up in the first place). */
  async syncPeers(): Promise<void> {
    await this.tool.syncPeers(this.spec());
  }

  tunnelConfigFor(tunnelIp: string): TunnelConfig {
    return {
      address: `${tunnelIp}/${this.subnet.prefix}`,
      masterPublicKey: this.publicKey,
      masterEndpoint: this.opts.endpoint,
      otherMasterEndpoints: [...(this.opts.otherEndpoints ?? [])],
      allowedIps: [this.subnet.cidr],
      persistentKeepalive: this.opts.keepaliveSeconds ?? 25,
      masterGrpcAddress: this.nodeServiceAddress,
      mesh: this.opts.mesh,
      listenPort: this.listenPort,
    };
  }

  /** Every enrolled node with the endpoint the hub last saw it at (mesh mode). */
  async meshPeers(): Promise<MeshPeer[]> {
    const status = await this.liveStatus();
    const endpoints = new Map((status?.peers ?? []).map((p) => [p.publicKey, p.endpoint ?? '']));
    // Read after the await: the list is the set at the moment it is sent.
    return [...this.peers.values()].map((p) => ({ nodeId: p.nodeId, publicKey: p.publicKey, endpoint: endpoints.get(p.publicKey) ?? '', tunnelAddress: p.tunnelIp }));
  }

  /**
   * `wg show` of the interface, shared: a caller that arrives while one runs waits for the next,
   * which starts after the running one ends, so every caller sees the endpoints as they were at
   * or after its call, and a storm of N subscribes runs a few `wg show`s of N peers, not N.
   */
  private liveStatus(): Promise<WgInterfaceStatus | undefined> {
    if (!this.showRunning) return this.launchShow();
    const after = this.showRunning.then(() => undefined, () => undefined);
    return (this.showQueued ??= after.then(() => {
      this.showQueued = undefined;
      return this.launchShow();
    }));
  }

  private launchShow(): Promise<WgInterfaceStatus | undefined> {
    const p: Promise<WgInterfaceStatus | undefined> = this.tool.show(this.opts.interfaceName).finally(() => {
      if (this.showRunning === p) this.showRunning = undefined;
    });
    this.showRunning = p;
    return p;
  }

  async close(): Promise<void> {
    await this.tool.down(this.opts.interfaceName);
    this.log.info({ interface: this.opts.interfaceName }, 'WireGuard hub down');
  }
}

const peerSpec = (p: HubPeer): WgPeerSpec => ({ publicKey: p.publicKey, allowedIps: [`${p.tunnelIp}/32`] });
