// The token a worker joins with in tunnel mode: the enrollment secret plus what the worker needs
// to trust the master on first contact (compare kubeadm's discovery-token-ca-cert-hash): the
// public enrollment endpoint and the SHA-256 fingerprint of the master's TLS certificate.
import { X509Certificate } from 'node:crypto';
import { ConfigError } from '../common/errors.js';

export const JOIN_PREFIX = 'hmj1.';

export interface JoinToken {
  /** host:port of the master's TLS enrollment endpoint. */
  endpoint: string;
  /** lowercase hex SHA-256 of the certificate (DER). */
  fingerprint: string;
  /** The enrollment secret (hm1.…), sent as the bearer of the Enroll call. */
  secret: string;
}

export function encodeJoinToken(t: JoinToken): string {
  return JOIN_PREFIX + Buffer.from(JSON.stringify({ e: t.endpoint, f: t.fingerprint, s: t.secret })).toString('base64url');
}

export function isJoinToken(s: string): boolean {
  return s.startsWith(JOIN_PREFIX);
}

export function decodeJoinToken(token: string): JoinToken {
  const bad = (why: string) => new ConfigError(`--token: not a valid join token (${why}); copy the whole output of \`hivemind token create\` on the master`);
  if (!isJoinToken(token)) throw bad(`it should start with ${JOIN_PREFIX}`);
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(token.slice(JOIN_PREFIX.length), 'base64url').toString('utf8'));
  } catch {
    throw bad('it does not decode');
  }
  const o = raw as { e?: unknown; f?: unknown; s?: unknown };
  if (typeof o.e !== 'string' || !/^[^\s]+:\d{1,5}$/.test(o.e)) throw bad('no endpoint');
  if (typeof o.f !== 'string' || !/^[0-9a-f]{64}$/.test(o.f)) throw bad('no certificate fingerprint');
  if (typeof o.s !== 'string' || !o.s.startsWith('hm1.')) throw bad('no secret');
  return { endpoint: o.e, fingerprint: o.f, secret: o.s };
}

/** lowercase hex SHA-256 of a PEM certificate's DER bytes. */
export function certFingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, '').toLowerCase();
}
