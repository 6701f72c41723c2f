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

const PKCS8_X25519_PREFIX = Buffer.from('302e020100300506032b656e04220420', 'hex');

export function wgPublicKeyOf(privateKey: string): string {
  if (!isWgKey(privateKey)) throw new WgKeyError('not a WireGuard private key (44 base64 characters)');
  // PKCS#8 DER of a raw X25519 key: a fixed 16-byte header, then the 32 key bytes. (A JWK
  // without its public part, which this used before, is refused by Node >= 24.22.)
  const der = Buffer.concat([PKCS8_X25519_PREFIX, Buffer.from(privateKey, 'base64')]);
  const key = createPrivateKey({ key: der, format: 'der', type: 'pkcs8' });
  return Buffer.from(createPublicKey(key).export({ format: 'jwk' }).x!, 'base64url').toString('base64');
}
