// Master-side authentication: the admin token (generated at first start, kept in
// <data>/admin.token, mode 0600), enrollment tokens and node credentials. Only SHA-256 hashes of
// tokens and credentials are stored; comparisons are constant-time. Secrets are never logged.
import { hash, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile, writeFile, chmod } from 'node:fs/promises';
import { join } from 'node:path';
import type { Metadata } from '@grpc/grpc-js';
import { AuthError } from '../common/errors.js';
import type { Clock } from '../common/clock.js';
import { readBearer } from '../protocol/auth-metadata.js';
import type { MasterStore, NodeIdentity } from './master-store.js';
import { InvalidArgumentError } from './master-errors.js';

export const ADMIN_TOKEN_FILE = 'admin.token';
export const DEFAULT_TOKEN_TTL_MS = 24 * 3600 * 1000;
export const MAX_TOKEN_TTL_MS = 365 * 24 * 3600 * 1000;
export const MAX_TOKEN_USES = 100_000;

const ENROLLMENT_PREFIX = 'hm1.';
const CREDENTIAL_PREFIX = 'hmn1.';
const ADMIN_PREFIX = 'hma1.';

/**
 * One-shot (crypto.hash): every node call hashes its credential, and a Hash object per call is a
 * native handle each garbage collection of the main thread has to finalize.
 */
export function sha256Hex(s: string): string {
  return hash('sha256', s, 'hex');
}

function secret(prefix: string): string {
  return prefix + randomBytes(32).toString('base64url');
}

function sameHash(aHex: string, bHex: string): boolean {
  const a = Buffer.from(aHex, 'hex');
  const b = Buffer.from(bHex, 'hex');
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface EnrollmentToken {
  token: string;
  expiresAt: number;
  uses: number;
}

export class MasterAuth {
  private constructor(
    private readonly store: MasterStore,
    private readonly clock: Clock,
    private readonly adminTokenHash: string,
    /** Where the admin token lives, for the CLI to read. */
    readonly adminTokenPath: string,
  ) {}

  /** Loads the admin token from the data dir, generating it (mode 0600) at first start. */
  static async create(dataDir: string, store: MasterStore, clock: Clock): Promise<MasterAuth> {
    const path = join(dataDir, ADMIN_TOKEN_FILE);
    let token: string;
    try {
      token = (await readFile(path, 'utf8')).trim();
      if (!token) throw new AuthError(`${path} is empty; delete it to generate a new admin token`);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      token = secret(ADMIN_PREFIX);
      // 'wx' so two masters racing on one data dir cannot overwrite each other's token; the one
      // that loses the race (an active and a standby starting together) takes the winner's.
      try {
        await writeFile(path, token + '\n', { mode: 0o600, flag: 'wx' });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        token = await readWinnerToken(path);
      }
    }
    await chmod(path, 0o600);
    return new MasterAuth(store, clock, sha256Hex(token), path);
  }

  /** Throws AuthError unless the call carries the admin token. */
  checkAdmin(md: Metadata): void {
    const bearer = readBearer(md);
    if (!bearer) throw new AuthError('missing admin token: send "authorization: Bearer <admin token>" (see <data dir>/admin.token)');
    if (!sameHash(sha256Hex(bearer), this.adminTokenHash)) throw new AuthError('wrong admin token');
  }

  /** Whether `token` is the admin token (for the gateway's /metrics, which has no gRPC metadata). */
  isAdminToken(token: string): boolean {
    return sameHash(sha256Hex(token), this.adminTokenHash);
  }

  /** The node whose credential the call carries; throws AuthError otherwise. */
  authenticateNode(md: Metadata): NodeIdentity {
    const bearer = readBearer(md);
    if (!bearer) throw new AuthError('missing node credential: send "authorization: Bearer <node credential>"');
    const node = this.nodeForCredential(bearer);
    if (!node) throw new AuthError('unknown node credential; register again with an enrollment token');
    return node;
  }

  /** Looks up a node credential; undefined when it is not one. */
  nodeForCredential(credential: string): NodeIdentity | undefined {
    if (!credential.startsWith(CREDENTIAL_PREFIX)) return undefined;
    const hash = sha256Hex(credential);
    const node = this.store.nodeIdentityByHash(hash);
    // The lookup is by hash already; the explicit compare keeps the check independent of the index.
    return node && sameHash(node.credentialHash, hash) ? node : undefined;
  }

  static isNodeCredential(bearer: string): boolean {
    return bearer.startsWith(CREDENTIAL_PREFIX);
  }

  createEnrollmentToken(opts: { ttlMs?: number; uses?: number } = {}): EnrollmentToken {
    const ttl = opts.ttlMs || DEFAULT_TOKEN_TTL_MS;
    const uses = opts.uses || 1;
    if (ttl > MAX_TOKEN_TTL_MS) throw new InvalidArgumentError(`token TTL ${ttl} ms is over the maximum of one year`);
    if (uses > MAX_TOKEN_USES) throw new InvalidArgumentError(`token uses ${uses} is over the maximum of ${MAX_TOKEN_USES}`);
    const token = secret(ENROLLMENT_PREFIX);
    const now = this.clock.now();
    this.store.insertEnrollmentToken({ hash: sha256Hex(token), expiresAt: now + ttl, uses, createdAt: now });
    return { token, expiresAt: now + ttl, uses };
  }

  /**
   * Spends one use of an enrollment token and, in the same transaction, runs `register`.
   * Throws AuthError saying why a token is refused (without echoing it).
   */
  enroll(token: string, register: () => void): void {
    if (!token.startsWith(ENROLLMENT_PREFIX)) throw new AuthError('not an enrollment token (expected hm1.…); create one with `hivemind token create`');
    const refused = this.store.useEnrollmentToken(sha256Hex(token), this.clock.now(), register);
    if (refused) throw new AuthError(`enrollment token refused: ${refused === 'unknown' ? 'unknown token' : refused}; create a new one with \`hivemind token create\``);
  }

  /** A fresh node credential and the hash to store. */
  newNodeCredential(): { credential: string; hash: string } {
    const credential = secret(CREDENTIAL_PREFIX);
    return { credential, hash: sha256Hex(credential) };
  }
}

/** The admin token another master just wrote: read until its write is whole (it is one short line). */
async function readWinnerToken(path: string): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const text = await readFile(path, 'utf8');
    if (text.endsWith('\n') && text.trim()) return text.trim();
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new AuthError(`${path} stays empty or torn while another master writes it; delete it to generate a new admin token`);
}
