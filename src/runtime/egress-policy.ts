// The pure decisions of the egress network (docs/egress.md): which destinations an egress task may
// never reach, the iptables rules that say so, the names of the bridge and chains derived from the
// network's name, and which of the host's resolvers a task may use. The I/O is in egress-firewall.ts
// and egress-network.ts.
import { createHash } from 'node:crypto';
import { isIP } from 'node:net';
import { ConfigError } from '../common/errors.js';

/**
 * Never reachable from the egress bridge, whatever the operator adds: the owner's LAN (RFC 1918),
 * link-local (with the cloud metadata address 169.254.169.254), CGNAT (RFC 6598, also Tailscale's
 * range), loopback, "this network", multicast and reserved. The WireGuard subnet and Docker's own
 * bridges are inside 10/8 or 172.16/12. IPv6 is not routed at all (the network has none).
 */
export const BLOCKED_V4: readonly string[] = [
  '0.0.0.0/8',
  '10.0.0.0/8',
  '100.64.0.0/10',
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24',
  '192.168.0.0/16',
  '198.18.0.0/15',
  '224.0.0.0/4',
  '240.0.0.0/4',
];

export interface EgressNames {
  /** The Docker network's name. */
  network: string;
  /** The Linux bridge Docker creates for it (at most 15 characters, an interface name). */
  bridge: string;
  /** The chain jumped to from DOCKER-USER for traffic the bridge forwards. */
  forwardChain: string;
  /** The chain jumped to from INPUT for traffic to the host itself. */
  inputChain: string;
  /** The byte counting chain: one rule per direction per running egress task, by its address. */
  accountingChain: string;
}

/** Names derived from the network's: two workers' networks never share a bridge or a chain. */
export function egressNames(network: string): EgressNames {
  if (!/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/.test(network)) throw new ConfigError(`egress network name "${network}" must be 1-63 letters, digits, '_', '.' or '-'`);
  const tag = createHash('sha256').update(network).digest('hex').slice(0, 8);
  return { network, bridge: `hme${tag}`, forwardChain: `HM-EGRESS-${tag}`, inputChain: `HM-EGRESS-IN-${tag}`, accountingChain: `HM-EGRESS-AC-${tag}` };
}

function v4ToInt(a: string): number {
  return a.split('.').reduce((n, o) => n * 256 + Number(o), 0);
}

/** Parses "a.b.c.d/n" (IPv4 only): the network's first address and prefix, or throws ConfigError. */
export function parseCidr(cidr: string, what: string): { base: number; prefix: number } {
  const m = /^(\d{1,3}(?:\.\d{1,3}){3})\/(\d{1,2})$/.exec(cidr);
  if (!m || isIP(m[1]!) !== 4 || Number(m[2]) > 32) throw new ConfigError(`${what} "${cidr}" is not an IPv4 CIDR such as 10.213.0.0/24`);
  const prefix = Number(m[2]);
  const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
  return { base: (v4ToInt(m[1]!) & mask) >>> 0, prefix };
}

/** Whether an IPv4 address lies in one of the blocked ranges (false for IPv6 and non-addresses). */
export function isBlockedV4(address: string): boolean {
  if (isIP(address) !== 4) return false;
  const a = v4ToInt(address);
  return BLOCKED_V4.some((c) => {
    const { base, prefix } = parseCidr(c, 'range');
    const mask = prefix === 0 ? 0 : (~0 << (32 - prefix)) >>> 0;
    return ((a & mask) >>> 0) === base;
  });
}

/**
 * The resolvers a task is pointed at. The operator's list (--egress-dns) must be public IPv4
 * addresses: a private one is on the LAN, which the task cannot reach. Without one, the host's
 * own nameservers (resolv.conf) that are public; none of them: refused, with what to set.
 */
/** --egress-dns ("1.1.1.1, 9.9.9.9"; unset) as the list egressResolvers takes. */
export function egressDnsList(value: string | undefined): string[] {
  return (value ?? '').split(',').map((a) => a.trim()).filter(Boolean);
}

export function egressResolvers(configured: readonly string[], resolvConf: string): string[] {
  for (const a of configured) {
    if (isIP(a) !== 4) throw new ConfigError(`--egress-dns "${a}" is not an IPv4 address`);
    if (isBlockedV4(a)) throw new ConfigError(`--egress-dns ${a} is a private, link-local or reserved address: an egress task cannot reach it; give a public resolver such as 1.1.1.1 or 9.9.9.9`);
  }
  if (configured.length > 0) return [...configured];
  const host = resolvConf
    .split('\n')
    .map((l) => /^\s*nameserver\s+(\S+)/.exec(l)?.[1])
    .filter((a): a is string => a !== undefined && isIP(a) === 4);
  const usable = host.filter((a) => !isBlockedV4(a));
  if (usable.length === 0) {
    throw new ConfigError(`no public DNS resolver for egress tasks: the host's resolvers (${host.join(', ') || 'none in /etc/resolv.conf'}) are private or local, which an egress task cannot reach; set --egress-dns (e.g. 1.1.1.1,9.9.9.9)`);
  }
  return usable;
}

/** Extra destinations blocked besides BLOCKED_V4: the masters this node talks to, when given as IPv4 addresses. */
export function masterBlocks(masterAddresses: readonly string[]): string[] {
  const out = new Set<string>();
  for (const a of masterAddresses) {
    const host = a.replace(/:\d+$/, '').replace(/^\[|\]$/g, '');
    if (isIP(host) === 4 && !isBlockedV4(host)) out.add(`${host}/32`);
  }
  return [...out];
}

/**
 * The rules, as iptables argument lists without the table (filter) and the command (-A). The
 * forward chain: replies to connections the task opened pass; every blocked range is refused (a
 * REJECT, not a DROP: the task learns at once instead of waiting for a timeout); the rest returns
 * to Docker's own chains (NAT to the internet). The input chain refuses everything the bridge sends
 * to the host itself (any of its addresses: LAN, tunnel, the monitor's and the gateway's ports),
 * replies to the host's own connections aside.
 */
export function egressRules(names: EgressNames, extraBlocked: readonly string[]): { forward: string[][]; input: string[][] } {
  const established = ['-m', 'conntrack', '--ctstate', 'ESTABLISHED,RELATED'];
  const forward: string[][] = [[...established, '-j', 'RETURN']];
  for (const c of [...BLOCKED_V4, ...extraBlocked]) forward.push(['-d', c, '-j', 'REJECT', '--reject-with', 'icmp-net-prohibited']);
  forward.push(['-j', 'RETURN']);
  const input: string[][] = [
    [...established, '-j', 'RETURN'],
    ['-p', 'tcp', '-j', 'REJECT', '--reject-with', 'tcp-reset'],
    ['-j', 'REJECT', '--reject-with', 'icmp-port-unreachable'],
  ];
  return { forward, input };
}

/** The jumps into the chains: from DOCKER-USER (forwarded) and INPUT (to the host), for the bridge only. */
export function egressJumps(names: EgressNames): { chain: string; rule: string[] }[] {
  return [
    // Counting first, both directions (it only returns): what a task sent, refused or not, and received.
    { chain: 'DOCKER-USER', rule: ['-i', names.bridge, '-j', names.accountingChain] },
    { chain: 'DOCKER-USER', rule: ['-o', names.bridge, '-j', names.accountingChain] },
    { chain: 'DOCKER-USER', rule: ['-i', names.bridge, '-j', names.forwardChain] },
    { chain: 'INPUT', rule: ['-i', names.bridge, '-j', names.inputChain] },
  ];
}

/** The counting rules of one task's address: sent (from it) and received (to it). */
export function accountingRules(ip: string): { tx: string[]; rx: string[] } {
  return { tx: ['-s', `${ip}/32`, '-j', 'RETURN'], rx: ['-d', `${ip}/32`, '-j', 'RETURN'] };
}

/**
 * Bytes sent and received by `ip`, from `iptables -L CHAIN -n -v -x` (columns: pkts bytes target
 * prot opt in out source destination); 0 for a direction without a rule.
 */
export function parseAccounting(listing: string, ip: string): { rxBytes: number; txBytes: number } {
  let rxBytes = 0;
  let txBytes = 0;
  for (const line of listing.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 9 || !/^\d+$/.test(f[1]!)) continue;
    const [source, destination] = [f[7]!, f[8]!];
    if (source === ip || source === `${ip}/32`) txBytes += Number(f[1]);
    else if (destination === ip || destination === `${ip}/32`) rxBytes += Number(f[1]);
  }
  return { rxBytes, txBytes };
}
