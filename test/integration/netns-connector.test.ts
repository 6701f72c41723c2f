// The netns connector with real nsenter, entering this test process's own network namespace (no
// container needed): sockets handed back over IPC carry bytes both ways and lose none a server
// sends first; the standalone executable's hidden subcommand serves the same way; a missing
// nsenter or listener is a ReplicaUnreachableError that says so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { fileURLToPath } from 'node:url';
import { execFileSync } from 'node:child_process';
import { NetnsConnector, servicesSupported } from '../../src/runtime/netns-connector.js';
import { ReplicaUnreachableError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';

const isCI = process.env.CI === 'true';

function nsenterUsable(t: { skip(r: string): void }): boolean {
  try {
    execFileSync('nsenter', ['-t', String(process.pid), '-n', '--', 'true'], { stdio: 'pipe' });
    return true;
  } catch (err) {
    const reason = `nsenter into a network namespace is not possible here (root and util-linux needed): ${String(err)}`;
    if (isCI) throw new Error(`required component missing under CI=true: ${reason}`);
    t.skip(reason);
    return false;
  }
}

/** A server on this namespace's loopback that greets first, then echoes. */
async function greeter(): Promise<{ server: Server; port: number }> {
  const server = createServer((s) => {
    s.write('HELLO\n');
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, port: (server.address() as AddressInfo).port };
}

async function exchange(connector: NetnsConnector, port: number): Promise<string> {
  const sock = await connector.connect(port);
  let got = '';
  sock.on('data', (d: Buffer) => (got += d.toString()));
  // Late on purpose: the greeting must wait in the kernel, not be read and lost by the child.
  await new Promise((r) => setTimeout(r, 100));
  sock.write('ping\n');
  while (!got.includes('ping\n')) await new Promise((r) => setTimeout(r, 10));
  sock.destroy();
  return got;
}

test('servicesSupported is ok as root with nsenter; names the problem without nsenter', async (t) => {
  if (!nsenterUsable(t)) return;
  assert.deepEqual(await servicesSupported(), { ok: true });
  const missing = await servicesSupported('/nonexistent/nsenter');
  assert.equal(missing.ok, false);
  assert.match(missing.reason!, /not installed \(util-linux\)/);
});

test('sockets come back over IPC, server-first bytes intact, many at once; refused ports are named', async (t) => {
  if (!nsenterUsable(t)) return;
  const { server, port } = await greeter();
  const connector = NetnsConnector.start(process.pid, silentLogger());
  try {
    assert.equal(await exchange(connector, port), 'HELLO\nping\n');
    const all = await Promise.all(Array.from({ length: 20 }, () => exchange(connector, port)));
    assert.deepEqual(all.filter((g) => g !== 'HELLO\nping\n'), [], 'every connection intact');
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const freePort = (closed.address() as AddressInfo).port;
    await new Promise((r) => closed.close(r));
    await assert.rejects(connector.connect(freePort), (err: unknown) => err instanceof ReplicaUnreachableError && /connection refused/.test(err.message));
  } finally {
    connector.close();
    server.close();
  }
  await assert.rejects(connector.connect(port), /stopped/, 'closed: no more connections');
});

test('the hidden `hivemind __netns-connector` subcommand serves as the child does', async (t) => {
  if (!nsenterUsable(t)) return;
  const { server, port } = await greeter();
  const main = fileURLToPath(new URL('../../src/cli/main.js', import.meta.url));
  const connector = NetnsConnector.start(process.pid, silentLogger(), { command: [process.execPath, main, '__netns-connector'] });
  try {
    assert.equal(await exchange(connector, port), 'HELLO\nping\n');
  } finally {
    connector.close();
    server.close();
  }
});

test('no nsenter, or a process that is gone: connect rejects saying why', async (t) => {
  if (!nsenterUsable(t)) return;
  const noTool = NetnsConnector.start(process.pid, silentLogger(), { nsenter: '/nonexistent/nsenter' });
  await assert.rejects(noTool.connect(80), (err: unknown) => err instanceof ReplicaUnreachableError && /not installed on this node/.test(err.message));
  noTool.close();
  const gone = NetnsConnector.start(2 ** 22 + 12345, silentLogger());
  await assert.rejects(gone.connect(80), (err: unknown) => err instanceof ReplicaUnreachableError && /network namespace/.test(err.message));
  gone.close();
});
