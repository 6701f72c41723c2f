// IPv4 tunnel subnets: parsing and the allocation of stable host addresses (pure).
import { ConfigError } from '../common/errors.js';

export interface Subnet {
  /** Network address as a 32-bit number. */
  network: number;
  prefix: number;
  cidr: string;
}

const ipToInt = (ip: string): number => ip.split('.').reduce((n, o) => n * 256 + Number(o), 0);
const intToIp = (n: number): string => [24, 16, 8, 0].map((s) => (n >>> s) & 255).join('.');

export function isIpv4(s: string): boolean {
  const parts = s.split('.');
  return parts.length === 4 && parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255);
}

export function parseSubnet(cidr: string): Subnet {
  const [ip, p] = cidr.split('/');
  const prefix = Number(p);
  if (!ip || !isIpv4(ip) || !Number.isInteger(prefix) || prefix < 8 || prefix > 30) {
    throw new ConfigError(`tunnel subnet "${cidr}" is not an IPv4 CIDR between /8 and /30 (example: 10.8.0.0/24)`);
  }
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  const network = (ipToInt(ip) & mask) >>> 0;
  return { network, prefix, cidr: `${intToIp(network)}/${prefix}` };
}

/** The n-th host address of the subnet (1 = the first usable, the master's). */
export function hostAddress(subnet: Subnet, n: number): string {
  const size = 2 ** (32 - subnet.prefix);
  if (n < 1 || n > size - 2) throw new RangeError(`host ${n} is outside ${subnet.cidr}`);
  return intToIp(subnet.network + n);
}

export function contains(subnet: Subnet, ip: string): boolean {
  if (!isIpv4(ip)) return false;
  const mask = (0xffffffff << (32 - subnet.prefix)) >>> 0;
  return ((ipToInt(ip) & mask) >>> 0) === subnet.network;
}

/** The host number of `ip` inside the subnet (1 = the master's), or undefined when it is outside. */
export function hostNumber(subnet: Subnet, ip: string): number | undefined {
  if (!contains(subnet, ip)) return undefined;
  return ipToInt(ip) - subnet.network;
}

export class SubnetFullError extends ConfigError {}
