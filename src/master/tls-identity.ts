// The master's TLS identity for the public enrollment endpoint: a self-signed ECDSA P-256
// certificate made once with openssl and kept in <data>/tls (key mode 0600). Workers trust it by
// the fingerprint in their join token, so no CA is involved and none is needed.
import { chmod, mkdir, readFile } from 'node:fs/promises';
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

export async function ensureTlsIdentity(dataDir: string, host: string, runner: CommandRunner): Promise<TlsIdentity> {
  const dir = join(dataDir, 'tls');
  const certFile = join(dir, 'cert.pem');
  const keyFile = join(dir, 'key.pem');
  try {
    const [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
    return { certPem, keyPem, fingerprint: certFingerprint(certPem) };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new TlsIdentityError(`cannot read the master's TLS identity in ${dir}: ${(err as Error).message}`, { cause: err });
  }
  await mkdir(dir, { recursive: true, mode: 0o700 });
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
  const [certPem, keyPem] = await Promise.all([readFile(certFile, 'utf8'), readFile(keyFile, 'utf8')]);
  return { certPem, keyPem, fingerprint: certFingerprint(certPem) };
}
