// The token a worker joins with in tunnel mode: the enrollment secret plus what the worker needs
// to trust the master on first contact (compare kubeadm's discovery-token-ca-cert-hash): the
// public enrollment endpoint and the SHA-256 fingerprint of the master's TLS certificate. Masters
// sharing one store (one active, the others standby) share that certificate and list each
// other's enrollment endpoints (`o`, absent in tokens of a lone master and of older masters: a
// token of either kind parses on either side).
import { X509Certificate } from 'node:crypto';
import { echoValue } from '../common/echo-value.js';
import { ConfigError } from '../common/errors.js';
import { MAX_MASTER_ADDRESS_CHARS, MAX_MASTERS } from '../config/master-list.js';

export const JOIN_PREFIX = 'hmj1.';

export interface JoinToken {
  /** host:port of the master's TLS enrollment endpoint. */
  endpoint: string;
  /** lowercase hex SHA-256 of the certificate (DER). */
  fingerprint: string;
  /** The enrollment secret (hm1.…), sent as the bearer of the Enroll call. */
  secret: string;
  /** The other masters' enrollment endpoints (host:port), tried in order after `endpoint`. */
  otherEndpoints: string[];
}

export function encodeJoinToken(t: Omit<JoinToken, 'otherEndpoints'> & { otherEndpoints?: readonly string[] }): string {
  const others = t.otherEndpoints?.length ? { o: t.otherEndpoints } : {};
  return JOIN_PREFIX + Buffer.from(JSON.stringify({ e: t.endpoint, f: t.fingerprint, s: t.secret, ...others })).toString('base64url');
}

/**
 * The other masters' enrollment endpoints, from their WireGuard endpoints: the same host with this
 * master's enrollment port (masters sharing one store are set up alike).
 */
export function peerEnrollEndpoints(peerWgEndpoints: readonly string[], enrollListen: string): string[] {
  const port = enrollListen.slice(enrollListen.lastIndexOf(':') + 1);
  return peerWgEndpoints.map((e) => `${e.slice(0, e.lastIndexOf(':'))}:${port}`);
}

/** Every master's enrollment endpoint, in the order a worker tries them. */
export function joinEndpoints(t: JoinToken): string[] {
  return [t.endpoint, ...t.otherEndpoints];
}

/** Room for every master's endpoint at its longest, the fingerprint and the secret, in base64. */
export const MAX_JOIN_TOKEN_CHARS = 8192;

const ENDPOINT_RE = /^[^\s]+:\d{1,5}$/;

export function isJoinToken(s: string): boolean {
  return s.startsWith(JOIN_PREFIX);
}

export function decodeJoinToken(token: string): JoinToken {
  const bad = (why: string) => new ConfigError(`--token: not a valid join token (${why}); copy the whole output of \`hivemind token create\` on the master`);
  if (!isJoinToken(token)) throw bad(`it should start with ${JOIN_PREFIX}`);
  if (token.length > MAX_JOIN_TOKEN_CHARS) throw bad(`it is ${token.length} characters, at most ${MAX_JOIN_TOKEN_CHARS}`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(token.slice(JOIN_PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw bad('it does not decode');
  }
  const o = raw as { e?: unknown; f?: unknown; s?: unknown; o?: unknown };
  if (typeof o.e !== 'string' || o.e.length > MAX_MASTER_ADDRESS_CHARS || !ENDPOINT_RE.test(o.e)) throw bad('no endpoint');
  if (typeof o.f !== 'string' || !/^[0-9a-f]{64}$/.test(o.f)) throw bad('no certificate fingerprint');
  if (typeof o.s !== 'string' || !o.s.startsWith('hm1.')) throw bad('no secret');
  return { endpoint: o.e, fingerprint: o.f, secret: o.s, otherEndpoints: otherEndpoints(o.o, bad) };
}

/** The token's `o`: absent, or at most MAX_MASTERS - 1 endpoints, each HOST:PORT of bounded length. */
function otherEndpoints(v: unknown, bad: (why: string) => ConfigError): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw bad('its list of other masters is not a list');
  if (v.length > MAX_MASTERS - 1) throw bad(`it lists ${v.length} other masters, at most ${MAX_MASTERS - 1}`);
  return v.map((e: unknown, i) => {
    if (typeof e !== 'string') throw bad(`other master ${i + 1} is not a string`);
    if (e.length > MAX_MASTER_ADDRESS_CHARS) throw bad(`other master ${i + 1} is ${e.length} characters, at most ${MAX_MASTER_ADDRESS_CHARS}`);
    if (!ENDPOINT_RE.test(e)) throw bad(`other master ${i + 1} "${echoValue(e)}" is not HOST:PORT`);
    return e;
  });
}

/** lowercase hex SHA-256 of a PEM certificate's DER bytes. */
export function certFingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}
