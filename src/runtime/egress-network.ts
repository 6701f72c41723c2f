// The egress network a node offers with --allow-egress (docs/egress.md): a Docker bridge network of
// the worker's own (no inter-container traffic, no IPv6, its own subnet, NAT to the internet) and
// the firewall that keeps it off the host, the LAN, the tunnel and the masters. Set up once at
// start; what a task's container needs of it is an EgressAttachment.
import { readFile } from 'node:fs/promises';
import type Docker from 'dockerode';
import { EgressUnavailableError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { EgressFirewall, type IptablesRunner } from './egress-firewall.js';
import { EgressShaper } from './egress-rate.js';
import { egressNames, egressResolvers, masterBlocks, parseCidr, type EgressNames } from './egress-policy.js';

/** What an egress task's container is given: the network to join and the resolvers to use. */
export interface EgressAttachment {
  network: string;
  dns: readonly string[];
  /** Counts each task's bytes by its address on the network (the firewall's counting chain). */
  meter?: EgressMeter;
  /** The node's --egress-rate, applied to each task's veth; absent: no cap. */
  shaper?: Pick<EgressShaper, 'apply'>;
}

export type EgressMeter = Pick<EgressFirewall, 'track' | 'counts' | 'untrack'>;

/** The Docker calls the egress network needs (narrow, so tests can fake them). */
export interface EgressNetworkEngine {
  /** The network's bridge options, subnet and IPv6 flag; undefined when it does not exist. */
  inspectNetwork(name: string, signal?: AbortSignal): Promise<{ options: Record<string, string>; subnets: string[]; ipv6: boolean } | undefined>;
  createNetwork(spec: { name: string; subnet: string; options: Record<string, string>; labels: Record<string, string> }, signal?: AbortSignal): Promise<void>;
  removeNetwork(name: string, signal?: AbortSignal): Promise<void>;
}

export class DockerEgressNetworks implements EgressNetworkEngine {
  constructor(private readonly docker: Docker) {}

  async inspectNetwork(name: string, signal?: AbortSignal): Promise<{ options: Record<string, string>; subnets: string[]; ipv6: boolean } | undefined> {
    try {
      const n = (await this.docker.getNetwork(name).inspect()) as { Options?: Record<string, string>; IPAM?: { Config?: { Subnet?: string }[] }; EnableIPv6?: boolean };
      return { options: n.Options ?? {}, subnets: (n.IPAM?.Config ?? []).map((c) => c.Subnet ?? ''), ipv6: n.EnableIPv6 === true };
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return undefined;
      throw err;
    }
  }

  async createNetwork(spec: { name: string; subnet: string; options: Record<string, string>; labels: Record<string, string> }, signal?: AbortSignal): Promise<void> {
    await this.docker.createNetwork({
      Name: spec.name,
      Driver: 'bridge',
      CheckDuplicate: true,
      EnableIPv6: false,
      Internal: false,
      Attachable: false,
      IPAM: { Driver: 'default', Config: [{ Subnet: spec.subnet }] },
      Options: spec.options,
      Labels: spec.labels,
      abortSignal: signal,
    } as Docker.NetworkCreateOptions);
  }

  async removeNetwork(name: string, signal?: AbortSignal): Promise<void> {
    try {
      await this.docker.getNetwork(name).remove({ abortSignal: signal } as object);
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode !== 404) throw err;
    }
  }
}

/** The bridge driver's options the egress network must have: these are what isolate it. */
export function bridgeOptions(names: EgressNames): Record<string, string> {
  return {
    'com.docker.network.bridge.name': names.bridge,
    // No traffic between containers on this network: each task is alone on it.
    'com.docker.network.bridge.enable_icc': 'false',
    'com.docker.network.bridge.enable_ip_masquerade': 'true',
  };
}

export interface EgressSettings {
  network: string;
  subnet: string;
  /** --egress-dns; empty: the host's public nameservers. */
  dns: readonly string[];
  /** The masters this node talks to (host:port): their IPv4 addresses are blocked too. */
  masterAddresses: readonly string[];
  /** --egress-rate in bits per second, each way, per task; undefined: no cap. */
  rateBps?: number | undefined;
}

export interface EgressDeps {
  engine: EgressNetworkEngine;
  iptables: IptablesRunner;
  logger: Logger;
  /** The host's resolv.conf text (default: read /etc/resolv.conf). */
  resolvConf?: () => Promise<string>;
}

/**
 * Puts the egress network and its firewall in place and checks them; throws
 * EgressUnavailableError (or ConfigError for a bad setting) saying what is missing.
 */
export async function prepareEgress(s: EgressSettings, d: EgressDeps, signal?: AbortSignal): Promise<EgressAttachment> {
  const names = egressNames(s.network);
  parseCidr(s.subnet, '--egress-subnet');
  const dns = egressResolvers(s.dns, await (d.resolvConf ?? (() => readFile('/etc/resolv.conf', 'utf8').catch(() => '')))());
  // The firewall before the network: no container can be on the bridge before its rules exist.
  const firewall = new EgressFirewall(d.iptables, names, masterBlocks(s.masterAddresses));
  await firewall.install(signal);
  const want = bridgeOptions(names);
  let have: Awaited<ReturnType<EgressNetworkEngine['inspectNetwork']>>;
  try {
    have = await d.engine.inspectNetwork(names.network, signal);
    if (!have) {
      await d.engine.createNetwork({ name: names.network, subnet: s.subnet, options: want, labels: { 'hivemind.egress': 'true' } }, signal);
      have = await d.engine.inspectNetwork(names.network, signal);
    }
  } catch (err) {
    throw new EgressUnavailableError(`creating Docker network ${names.network} (${s.subnet}) failed: ${errorMessage(err)}`, { cause: err });
  }
  const wrong = !have
    ? 'it is missing after creating it'
    : have.ipv6
      ? 'it has IPv6 enabled'
      : !have.subnets.includes(s.subnet)
        ? `its subnet is ${have.subnets.join(', ') || 'unset'}, not ${s.subnet}`
        : Object.entries(want).filter(([k, v]) => have!.options[k] !== v).map(([k, v]) => `${k} is ${have!.options[k] ?? 'unset'}, not ${v}`)[0];
  if (wrong) throw new EgressUnavailableError(`the existing Docker network ${names.network} is not the worker's egress network: ${wrong}; remove it (docker network rm ${names.network}) or choose another --egress-network`);
  d.logger.info({ network: names.network, bridge: names.bridge, subnet: s.subnet, dns }, 'egress network ready');
  // A shaper always: a task may ask for a cap of its own (spec.egress_rate_bps) on a node without one.
  return { network: names.network, dns, meter: firewall, shaper: new EgressShaper(s.rateBps || undefined) };
}

/** Takes the egress network and its firewall away (tests; an operator turning egress off). */
export async function removeEgress(network: string, d: Pick<EgressDeps, 'engine' | 'iptables'>, masterAddresses: readonly string[] = []): Promise<void> {
  const names = egressNames(network);
  await d.engine.removeNetwork(names.network);
  await new EgressFirewall(d.iptables, names, masterBlocks(masterAddresses)).remove();
}
