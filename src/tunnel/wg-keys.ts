// WireGuard key pairs, generated in-process (X25519, RFC 7748: the same clamping WireGuard does),
// so a private key never passes through a command line or another process.
import { createPrivateKey, createPublicKey, generateKeyPairSync } from 'node:crypto';
import { HivemindError } from '../common/errors.js';

export interface WgKeyPair {
  /** base64 of the 32-byte private key, as `wg genkey` prints it. */
  privateKey: string;
  /** base64 of the 32-byte public key, as `wg pubkey` prints it. */
  publicKey: string;
}

export class WgKeyError extends HivemindError {
  constructor(message: string) {
    super('WG_KEY_INVALID', message);
  }
}

const KEY_RE = /^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$/;

export function isWgKey(s: string): boolean {
  return KEY_RE.test(s);
}

export function generateWgKeyPair(): WgKeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  const d = privateKey.export({ format: 'jwk' }).d!;
  const x = publicKey.export({ format: 'jwk' }).x!;
  return { privateKey: Buffer.from(d, 'base64url').toString('base64'), publicKey: Buffer.from(x, 'base64url').toString('base64') };
}

export function wgPublicKeyOf(privateKey: string): string {
  if (!isWgKey(privateKey)) throw new WgKeyError('not a WireGuard private key (44 base64 characters)');
  const key = createPrivateKey({ key: { kty: 'OKP', crv: 'X25519', d: Buffer.from(privateKey, 'base64').toString('base64url'), x: '' }, format: 'jwk' });
  return Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url').toString('base64');
}
