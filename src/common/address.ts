// Host:port addresses and loopback names, read one way by the master, the worker, the monitor and
// the CLI. IPv6 hosts are written in brackets ("[::1]:7070"); socket calls take them without.
import { isIP } from 'node:net';

/** "[::1]" -> "::1"; any other host is returned as it is. */
export function stripBrackets(host: string): string {
  return host.replace(/^\[|\]$/g, '');
}

/**
 * Splits "host:port" at its last colon, both parts as written ("[::1]:7070" -> "[::1]", "7070").
 * For an address already checked to be host:port.
 */
export function splitHostPort(address: string): { host: string; port: string } {
  const colon = address.lastIndexOf(':');
  return { host: address.slice(0, colon), port: address.slice(colon + 1) };
}

/** The port of "host:port" as a number (NaN when it is not one). */
export function portOf(address: string): number {
  return Number(splitHostPort(address).port);
}

/**
 * Reads "host", "host:port", "[v6]" or "[v6]:port" (an HTTP Host header, a gRPC peer): the host
 * without brackets and the port when there is one, or undefined when it is none of these.
 */
export function parseHostPort(text: string): { host: string; port?: number } | undefined {
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d+))?$/.exec(text);
  if (!m) return undefined;
  const host = m[1] ?? m[2]!;
  return m[3] === undefined ? { host } : { host, port: Number(m[3]) };
}

/** A v4-mapped v6 address (how a dual-stack socket names an IPv4 peer) as plain IPv4; others as they are. */
export function unmapIPv4(address: string): string {
  return address.startsWith('::ffff:') && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
}

/** Whether a host names this machine only: localhost, 127.0.0.0/8 or ::1 (brackets allowed). */
export function isLoopbackHost(host: string): boolean {
  const h = stripBrackets(host).toLowerCase();
  if (h === 'localhost') return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  return h === '::1';
}
