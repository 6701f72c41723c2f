// The master's TLS identity for the public enrollment endpoint: a self-signed ECDSA P-256
// certificate made once with openssl and kept in <data>/tls (key mode 0600). Workers trust it by
// the fingerprint in their join token, so no CA is involved and none is needed.
import { chmod, mkdir, mkdtemp, readFile, rename, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { HivemindError } from '../common/errors.js';
import { isIpv4 } from '../tunnel/subnet.js';
import { ProgramNotFoundError, type CommandRunner } from '../tunnel/command-runner.js';
import { certFingerprint } from '../tunnel/join-token.js';

export interface TlsIdentity {
  certPem: string;
  keyPem: string;
  fingerprint: string;
}

export class TlsIdentityError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('TLS_IDENTITY', message, options);
  }
}

async function readIdentity(dir: string): Promise<TlsIdentity | undefined> {
  try {
    const [certPem, keyPem] = await Promise.all([readFile(join(dir, 'cert.pem'), 'utf8'), readFile(join(dir, 'key.pem'), 'utf8')]);
    return { certPem, keyPem, fingerprint: certFingerprint(certPem) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new TlsIdentityError(`cannot read the master's TLS identity in ${dir}: ${(err as Error).message}`, { cause: err });
  }
}

/**
 * The identity in <data>/tls, made once. Two masters sharing a data dir may start together: each
 * makes its pair in a directory of its own and renames it to tls/, which only the first rename
 * wins, so both serve one certificate (the join token pins one fingerprint for every master).
 */
export async function ensureTlsIdentity(dataDir: string, host: string, runner: CommandRunner): Promise<TlsIdentity> {
  const dir = join(dataDir, 'tls');
  const found = await readIdentity(dir);
  if (found) return found;
  await mkdir(dataDir, { recursive: true });
  const tmp = await mkdtemp(join(dataDir, '.tls-'));
  try {
    await chmod(tmp, 0o700);
    await makeIdentity(tmp, host, runner);
    try {
      // Replaces a missing or empty tls/ only (an earlier start that failed half way leaves it empty).
      await rename(tmp, dir);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
    }
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
  const made = await readIdentity(dir);
  if (!made) throw new TlsIdentityError(`the master's TLS identity in ${dir} is incomplete (cert.pem or key.pem missing): move the directory away to make a new one (every node's join token must then be made again)`);
  return made;
}

async function makeIdentity(dir: string, host: string, runner: CommandRunner): Promise<void> {
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  const san = isIpv4(host) ? `IP:${host}` : `DNS:${host}`;
  let r;
  try {
    r = await runner.run('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyFile, '-out', certFile, '-days', '3650', '-subj', '/CN=hivemind-master', '-addext', `subjectAltName=${san}`,
    ]);
  } catch (err) {
    if (err instanceof ProgramNotFoundError) throw new TlsIdentityError('openssl not found: install the openssl package (it makes the master\'s TLS certificate once)');
    throw err;
  }
  if (r.exitCode !== 0) throw new TlsIdentityError(`openssl could not make the master's certificate: ${r.stderr.trim()}`);
  await chmod(keyFile, 0o600);
}
