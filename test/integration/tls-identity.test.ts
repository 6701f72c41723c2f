// The master's TLS identity with the real openssl: made once (key 0600) and read back; two masters
// on one data dir starting together end up with one certificate (the join token pins one
// fingerprint); a half-made tls/ directory is refused with the way out.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureTlsIdentity } from '../../src/master/tls-identity.js';
import { execaRunner } from '../../src/tunnel/command-runner.js';

test('TLS identity: two masters on one data dir starting together serve one certificate; made once, key 0600', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const [a, b, c] = await Promise.all([0, 1, 2].map((i) => ensureTlsIdentity(dir, `192.0.2.${i + 1}`, execaRunner)));
  assert.equal(a!.fingerprint, b!.fingerprint);
  assert.equal(b!.fingerprint, c!.fingerprint);
  assert.equal(a!.keyPem, c!.keyPem);
  // The key on disk is the certificate's: a mixed pair would fail every TLS handshake.
  const onDisk = { cert: await readFile(join(dir, 'tls', 'cert.pem'), 'utf8'), key: await readFile(join(dir, 'tls', 'key.pem'), 'utf8') };
  assert.equal(onDisk.cert, a!.certPem);
  assert.ok(new X509Certificate(onDisk.cert).checkPrivateKey(createPrivateKey(onDisk.key)), 'the key pairs with the certificate');
  assert.equal((await stat(join(dir, 'tls', 'key.pem'))).mode & 0o777, 0o600);
  assert.equal((await stat(join(dir, 'tls'))).mode & 0o777, 0o700);
  assert.deepEqual(await readdir(dir), ['tls'], 'no temporary directory left behind');
  assert.equal((await ensureTlsIdentity(dir, '192.0.2.9', execaRunner)).fingerprint, a!.fingerprint, 'read back, not made again');
});

test('TLS identity: a tls/ directory missing its key is refused, saying what to do', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hm-tls-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  await mkdir(join(dir, 'tls'));
  await writeFile(join(dir, 'tls', 'cert.pem'), 'half made');
  await assert.rejects(ensureTlsIdentity(dir, '192.0.2.1', execaRunner), /TLS identity in .*tls is incomplete .* move the directory away/);
});
