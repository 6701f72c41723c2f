// The master's side of the WireGuard network: its own interface (the hub), one peer per enrolled
// node with a stable /32, and the tunnel config each node gets. Peers are restored from the
// store at start, so a restarted master needs no operator action.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { portOf } from '../common/address.js';
import { ConfigError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { CommandRunner } from '../tunnel/command-runner.js';
import { generateWgKeyPair, isWgKey, wgPublicKeyOf } from '../tunnel/wg-keys.js';
import type { WgInterfaceSpec, WgPeerSpec } from '../tunnel/wg-spec.js';
import type { WgImplementation, WireGuardTool } from '../tunnel/wireguard-tool.js';
import { allocateAddress, hostAddress, parseSubnet, type Subnet } from '../tunnel/subnet.js';
import type { TunnelConfig } from '../protocol/gen/hivemind/v1/enroll.js';
import type { MeshPeer } from '../protocol/gen/hivemind/v1/node.js';
import type { MasterStore } from './master-store.js';

export interface TunnelHubOptions {
  /** WireGuard interface name on the master. */
  interfaceName: string;
  /** Tunnel subnet; the master takes its first address. */
  subnet: string;
  /** Public UDP host:port of the master's WireGuard interface, as workers dial it. */
  endpoint: string;
  /** Port of the worker-facing gRPC service on the master's tunnel address. */
  nodePort: number;
  /** Workers peer directly with each other (the master sends MeshPeers). */
  mesh: boolean;
  /** Seconds. Default 25. */
  keepaliveSeconds?: number;
  dataDir: string;
}

export class TunnelHub {
  private implementation: WgImplementation | undefined;

  private constructor(
    private readonly opts: TunnelHubOptions,
    private readonly subnet: Subnet,
    private readonly privateKey: string,
    readonly publicKey: string,
    private readonly tool: WireGuardTool,
    private readonly runner: CommandRunner,
    private readonly store: MasterStore,
    private readonly log: Logger,
  ) {}

  static async create(opts: TunnelHubOptions, deps: { tool: WireGuardTool; runner: CommandRunner; store: MasterStore; log: Logger }): Promise<TunnelHub> {
    const subnet = parseSubnet(opts.subnet);
    if (!/^[^\s]+:\d{1,5}$/.test(opts.endpoint)) throw new ConfigError(`--wg-endpoint: "${opts.endpoint}" is not HOST:PORT`);
    const dir = join(opts.dataDir, 'wg');
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const keyFile = join(dir, 'private.key');
    let privateKey: string;
    try {
      privateKey = (await readFile(keyFile, 'utf8')).trim();
      if (!isWgKey(privateKey)) throw new ConfigError(`${keyFile} does not hold a WireGuard private key; move it away to make a new one (every node must then enroll again)`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      privateKey = generateWgKeyPair().privateKey;
      await writeFile(keyFile, privateKey + '\n', { mode: 0o600, flag: 'wx' });
    }
    return new TunnelHub(opts, subnet, privateKey, wgPublicKeyOf(privateKey), deps.tool, deps.runner, deps.store, deps.log.child({ component: 'tunnel-hub' }));
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

  private spec(): WgInterfaceSpec {
    const peers: WgPeerSpec[] = this.store
      .listNodes()
      .filter((n) => n.wgPublicKey && n.tunnelIp)
      .map((n) => ({ publicKey: n.wgPublicKey!, allowedIps: [`${n.tunnelIp}/32`] }));
    return { name: this.opts.interfaceName, privateKey: this.privateKey, address: `${this.masterIp}/${this.subnet.prefix}`, listenPort: this.listenPort, peers };
  }

  /** Brings the interface up with every known node as a peer; forwarding lets nodes reach each other through the hub. */
  async start(): Promise<void> {
    const spec = this.spec();
    this.implementation = await this.tool.up(spec);
    const fwd = await this.runner.run('sysctl', ['-w', 'net.ipv4.ip_forward=1']).catch((err: unknown) => ({ exitCode: 1, stderr: errorMessage(err), stdout: '' }));
    if (fwd.exitCode !== 0) this.log.warn({ err: fwd.stderr.trim() }, 'could not enable IPv4 forwarding: nodes will reach the master but not each other through it');
    this.log.info({ interface: spec.name, address: spec.address, peers: spec.peers.length, implementation: this.implementation, endpoint: this.opts.endpoint }, 'WireGuard hub up');
  }

  allocate(): string {
    return allocateAddress(this.subnet, [this.masterIp, ...this.store.usedTunnelIps()]);
  }

  /** Re-applies the peer set from the store (after an enrollment or a node removal). */
  async syncPeers(): Promise<void> {
    await this.tool.syncPeers(this.spec());
  }

  tunnelConfigFor(tunnelIp: string): TunnelConfig {
    return {
      address: `${tunnelIp}/${this.subnet.prefix}`,
      masterPublicKey: this.publicKey,
      masterEndpoint: this.opts.endpoint,
      allowedIps: [this.subnet.cidr],
      persistentKeepalive: this.opts.keepaliveSeconds ?? 25,
      masterGrpcAddress: this.nodeServiceAddress,
      mesh: this.opts.mesh,
      listenPort: this.listenPort,
    };
  }

  /** Every enrolled node with the endpoint the hub last saw it at (mesh mode). */
  async meshPeers(): Promise<MeshPeer[]> {
    const status = await this.tool.show(this.opts.interfaceName);
    const endpoints = new Map((status?.peers ?? []).map((p) => [p.publicKey, p.endpoint ?? '']));
    return this.store
      .listNodes()
      .filter((n) => n.wgPublicKey && n.tunnelIp)
      .map((n) => ({ nodeId: n.id, publicKey: n.wgPublicKey!, endpoint: endpoints.get(n.wgPublicKey!) ?? '', tunnelAddress: n.tunnelIp! }));
  }

  async close(): Promise<void> {
    await this.tool.down(this.opts.interfaceName);
    this.log.info({ interface: this.opts.interfaceName }, 'WireGuard hub down');
  }
}
