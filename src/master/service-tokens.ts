// A service's client tokens: "hmsvc_" + 64 hex digits, sent as `Authorization: Bearer ...` to the
// gateway. Only the secret's sha256 is stored; its first 12 hex digits name the token.
import { hash, randomBytes } from 'node:crypto';

export const SERVICE_TOKEN_PREFIX = 'hmsvc_';
const TOKEN = /^hmsvc_[0-9a-f]{64}$/;

export function hashServiceToken(token: string): string {
  return hash('sha256', token, 'hex');
}

export function newServiceToken(): { token: string; hash: string; id: string } {
  const token = SERVICE_TOKEN_PREFIX + randomBytes(32).toString('hex');
  const hash = hashServiceToken(token);
  return { token, hash, id: hash.slice(0, 12) };
}

/** The hash of a well-formed token, or undefined: a malformed one is never looked up. */
export function serviceTokenHash(presented: string): string | undefined {
  return TOKEN.test(presented) ? hashServiceToken(presented) : undefined;
}
