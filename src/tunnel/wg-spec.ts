// What a WireGuard interface should look like, and the two text forms it is written in: the
// `wg setconf` form (Linux; addresses are set with `ip`) and the wg-quick form that WireGuard for
// Windows' tunnel service reads. Pure functions: unit-tested without WireGuard.

export interface WgPeerSpec {
  publicKey: string;
  /** host:port where the peer listens; absent for peers that only dial in. */
  endpoint?: string;
  /** Tunnel prefixes routed to this peer, e.g. ["10.8.0.0/24"] or ["10.8.0.7/32"]. */
  allowedIps: string[];
  /** Seconds; keeps NAT mappings open from the side behind NAT. 0 = off. */
  persistentKeepalive?: number;
}

export interface WgInterfaceSpec {
  /** Interface (Linux) or tunnel (Windows) name: letters, digits, "-", "_", at most 15 characters. */
  name: string;
  privateKey: string;
  /** This host's tunnel address with its prefix, e.g. "10.8.0.2/24". */
  address: string;
  listenPort?: number;
  mtu?: number;
  peers: WgPeerSpec[];
}

/** A change to some peers of a running interface (WireGuardTool.updatePeers). */
export interface WgPeerChange {
  set: WgPeerSpec[];
  /** Public keys of the peers to drop. */
  remove: string[];
}

/** Peers per `wg set` command: keeps one command's arguments far below the kernel's limit. */
export const WG_SET_BATCH = 500;

/**
 * The `wg set IF peer KEY …` argument lists for a change, at most WG_SET_BATCH peers each. An
 * empty allowed-ips list clears the peer's routes (wg's `allowed-ips ""`); a keepalive of 0
 * turns it off, none leaves it as it is.
 */
export function wgSetArgs(name: string, change: WgPeerChange): string[][] {
  const clauses: string[][] = [
    ...change.remove.map((key) => ['peer', key, 'remove']),
    ...change.set.map((p) => [
      'peer', p.publicKey,
      ...(p.endpoint ? ['endpoint', p.endpoint] : []),
      ...(p.persistentKeepalive === undefined ? [] : ['persistent-keepalive', p.persistentKeepalive ? String(p.persistentKeepalive) : 'off']),
      'allowed-ips', p.allowedIps.join(','),
    ]),
  ];
  const out: string[][] = [];
  for (let i = 0; i < clauses.length; i += WG_SET_BATCH) out.push(['set', name, ...clauses.slice(i, i + WG_SET_BATCH).flat()]);
  return out;
}

export const WG_NAME_RE = /^[A-Za-z0-9_-]{1,15}$/;
export const DEFAULT_MTU = 1420;

function peerLines(p: WgPeerSpec): string[] {
  const lines = ['[Peer]', `PublicKey = ${p.publicKey}`];
  if (p.endpoint) lines.push(`Endpoint = ${p.endpoint}`);
  lines.push(`AllowedIPs = ${p.allowedIps.join(', ')}`);
  if (p.persistentKeepalive) lines.push(`PersistentKeepalive = ${p.persistentKeepalive}`);
  return lines;
}

/** The `wg setconf` / `wg syncconf` form: keys, port and peers only. */
export function renderWgConf(spec: WgInterfaceSpec): string {
  const lines = ['[Interface]', `PrivateKey = ${spec.privateKey}`];
  if (spec.listenPort) lines.push(`ListenPort = ${spec.listenPort}`);
  for (const p of spec.peers) lines.push('', ...peerLines(p));
  return lines.join('\n') + '\n';
}

/** The wg-quick form (Address, MTU), for WireGuard for Windows' `/installtunnelservice`. */
export function renderWgQuickConf(spec: WgInterfaceSpec): string {
  const lines = ['[Interface]', `PrivateKey = ${spec.privateKey}`, `Address = ${spec.address}`, `MTU = ${spec.mtu ?? DEFAULT_MTU}`];
  if (spec.listenPort) lines.push(`ListenPort = ${spec.listenPort}`);
  for (const p of spec.peers) lines.push('', ...peerLines(p));
  return lines.join('\r\n') + '\r\n';
}

export interface WgPeerStatus {
  publicKey: string;
  endpoint?: string;
  allowedIps: string[];
  /** Milliseconds since the epoch; 0 when no handshake happened yet. */
  latestHandshakeMs: number;
  rxBytes: number;
  txBytes: number;
  persistentKeepalive: number;
}

export interface WgInterfaceStatus {
  publicKey: string;
  listenPort: number;
  peers: WgPeerStatus[];
}

/**
 * Parses `wg show <if> dump`: a first line for the interface (private key, public key, listen
 * port, fwmark), then one line per peer (public key, preshared key, endpoint, allowed ips,
 * latest handshake in seconds, rx, tx, keepalive), tab-separated.
 */
export function parseWgDump(text: string): WgInterfaceStatus {
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  const head = lines[0]?.split('\t');
  if (!head || head.length < 4) throw new Error(`unexpected \`wg show dump\` output: ${JSON.stringify(text.slice(0, 200))}`);
  const peers = lines.slice(1).map((line): WgPeerStatus => {
    const f = line.split('\t');
    if (f.length < 8) throw new Error(`unexpected peer line in \`wg show dump\`: ${JSON.stringify(line.slice(0, 200))}`);
    const num = (s: string | undefined) => (s && /^\d+$/.test(s) ? Number(s) : 0);
    const st: WgPeerStatus = {
      publicKey: f[0]!,
      allowedIps: f[3] === '(none)' ? [] : f[3]!.split(','),
      latestHandshakeMs: num(f[4]) * 1000,
      rxBytes: num(f[5]),
      txBytes: num(f[6]),
      persistentKeepalive: num(f[7]),
    };
    if (f[2] && f[2] !== '(none)') st.endpoint = f[2];
    return st;
  });
  return { publicKey: head[1]!, listenPort: Number(head[2]) || 0, peers };
}
