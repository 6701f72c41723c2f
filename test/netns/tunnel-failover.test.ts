// Failover in tunnel mode with real wireguard-go: two master hosts (m1 active, m2 standby) and a
// worker host, each a network namespace on one bridge; both masters on one PostgreSQL schema and
// one shared data dir. The worker enrolls through a join token listing both masters, tasks run,
// m1 is killed with -9; m2 takes the lease and brings up the same hub (the key from the database,
// 10.8.0.1, the peers from the store); the worker's tunnel moves its master peer to m2's endpoint
// and every task ends once with its result (the fault summary: lost 0, duplicated 0).
//
// The masters reach the test PostgreSQL (on the root namespace's loopback) through a Unix socket
// in the test's temporary dir, forwarded by this process: a socket file crosses network
// namespaces, so nothing listens on any network address of the root namespace.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createConnection, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requireDockerImage, requireNetns, requirePostgres, requireWireGuard } from '../helpers/requirements.js';
import { NetLab } from '../helpers/netns.js';
import { waitFor } from '../helpers/cli-process.js';
import { runInNs, startInNs, stopInNs, type NsProc } from '../helpers/netns-cli.js';
import { judgeFailoverTask, recordScenario, type EndedTaskInfo } from '../helpers/fault-ledger.js';
import { freshPgSchema, testPgUrl } from '../helpers/test-store.js';
import { PgDriver } from '../../src/master/sql/pg-driver.js';
import { wgPublicKeyOf } from '../../src/tunnel/wg-keys.js';

const IMAGE = 'hivemind/busybox:1';
const TASKS = 2;

/** Listens on `<dir>/.s.PGSQL.<port>` (where libpq-style clients look with host=<dir>) and pipes each connection to host:port. */
async function pgSocketForwarder(dir: string, host: string, port: number): Promise<Server> {
  const server = createServer((c) => {
    const up = createConnection(port, host);
    c.pipe(up).pipe(c);
    const end = () => { c.destroy(); up.destroy(); };
    c.on('error', end).on('close', end);
    up.on('error', end).on('close', end);
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(join(dir, `.s.PGSQL.${port}`), resolve));
  return server;
}

test('tunnel mode: the active master host killed -9, the standby host brings up the same hub and every task ends once', async (t) => {
  if (!requireNetns(t) || !requireWireGuard(t) || !requirePostgres(t, testPgUrl()) || !requireDockerImage(t, IMAGE)) return;
  const lab = NetLab.create(['m1', 'm2', 'w']);
  const home = mkdtempSync(join(tmpdir(), 'hm-netns-ha-'));
  const procs: NsProc[] = [];
  let forwarder: Server | undefined;
  const id = lab.id;
  const outputs = () => procs.map((p) => p.output).join('\n----\n');
  try {
    const { url: direct } = freshPgSchema();
    const sockDir = join(home, 'pg');
    mkdirSync(sockDir);
    const target = new URL(direct);
    forwarder = await pgSocketForwarder(sockDir, target.hostname, Number(target.port || 5432));
    const viaSocket = new URL(direct);
    viaSocket.searchParams.set('host', sockDir);
    const store = viaSocket.toString();

    const shared = join(home, 'master');
    const [m1, m2] = [lab.host('m1'), lab.host('m2')];
    const ifname = (h: string) => `hm${id}${h}`;
    const startMaster = (h: 'm1' | 'm2', self: string, other: string) => {
      const mhome = join(home, `home-${h}`);
      const p = startInNs(lab, h, [
        'master', 'start', '--data-dir', shared, '--store', store, '--lease', '2s', '--report-interval', '1s',
        // Each host its own interface name: wg's control sockets share /var/run/wireguard across namespaces.
        '--wg-endpoint', `${self}:51820`, '--peer-masters', `${other}:51820`, '--wg-interface', ifname(h), '--enroll-listen', `${self}:7443`,
        '--gateway-listen', 'off',
      ], { PATH: process.env.PATH, HOME: mhome, HIVEMIND_HOME: mhome, HIVEMIND_LOG_LEVEL: 'info' });
      procs.push(p);
      return p;
    };
    const exited = (p: NsProc) => p.child.exitCode !== null || p.child.signalCode !== null;
    const master1 = startMaster('m1', m1.ip, m2.ip);
    await waitFor('m1 active with its hub up', () => {
      if (exited(master1)) throw new Error(`m1 exited:\n${master1.output}`);
      return /tunnel mode: node service on the tunnel only/.test(master1.output) || undefined;
    }, 30_000, 100);
    const master2 = startMaster('m2', m2.ip, m1.ip);
    await waitFor('m2 listening as a standby', () => {
      if (exited(master2)) throw new Error(`m2 exited:\n${master2.output}`);
      return /master listening as a standby/.test(master2.output) || undefined;
    }, 30_000, 100);

    const adminToken = readFileSync(join(shared, 'admin.token'), 'utf8').trim();
    const admin = { PATH: process.env.PATH, HOME: home, HIVEMIND_HOME: home, HIVEMIND_MASTER: '127.0.0.1:7070', HIVEMIND_ADMIN_TOKEN: adminToken };
    const cli = async (host: 'm1' | 'm2', args: string[]) => runInNs(lab, host, args, admin);

    const tok = await cli('m1', ['token', 'create']);
    assert.equal(tok.code, 0, tok.out);
    const token = tok.out.trim();
    const listed = JSON.parse(Buffer.from(token.slice(5), 'base64url').toString()) as { e: string };
    assert.equal(listed.e, `${m1.ip}:7443`);

    const wenv = { PATH: process.env.PATH, HOME: join(home, 'home-w'), HIVEMIND_HOME: join(home, 'home-w') };
    const worker = startInNs(lab, 'w', ['worker', 'start', '--token', token, '--data-dir', join(home, 'w'), '--wg-interface', ifname('w'), '--report-interval', '1s', '--max-tasks', String(TASKS)], wenv);
    procs.push(worker);
    const tunnel = JSON.parse(await waitFor('the worker enrolled', () => {
      if (exited(worker)) throw new Error(`worker exited:\n${worker.output}`);
      try {
        return readFileSync(join(home, 'w', 'tunnel.json'), 'utf8');
      } catch {
        return undefined;
      }
    }, 60_000, 250)) as { config: { masterEndpoint: string; otherMasterEndpoints: string[]; masterPublicKey: string } };
    assert.equal(tunnel.config.masterEndpoint, `${m1.ip}:51820`);
    assert.deepEqual(tunnel.config.otherMasterEndpoints, [`${m2.ip}:51820`]);
    const hubKey = lab.exec('m1', ['wg', 'show', ifname('m1'), 'public-key']).trim();
    assert.equal(tunnel.config.masterPublicKey, hubKey);
    // From the worker's key file: its interface may not be configured yet when tunnel.json appears.
    const workerKey = wgPublicKeyOf(readFileSync(join(home, 'w', 'wg', 'private.key'), 'utf8').trim());
    // The hub's key is the database's, not a file of the shared data dir.
    const db = PgDriver.open(direct);
    try {
      const row = db.prepare('SELECT wg_private_key FROM hub_identity').get() as { wg_private_key: string };
      assert.equal(wgPublicKeyOf(row.wg_private_key), hubKey);
    } finally {
      db.close();
    }
    assert.equal(existsSync(join(shared, 'wg', 'private.key')), false, 'no hub key file in the data dir');

    const ids: string[] = [];
    for (let i = 0; i < TASKS; i++) {
      const s = await cli('m1', ['submit', '--image', IMAGE, '--', 'sh', '-c', `sleep 8; echo task-${i} > /output/r.txt`]);
      assert.equal(s.code, 0, s.out);
      ids.push(s.out.trim());
    }
    await waitFor('every task running', async () => {
      for (const tid of ids) if ((JSON.parse((await cli('m1', ['get', tid, '--json'])).out) as EndedTaskInfo).state !== 'running') return undefined;
      return true;
    }, 90_000, 250);

    master1.child.kill('SIGKILL');
    const killedAt = Date.now();
    await new Promise((r) => (exited(master1) ? r(undefined) : master1.child.once('exit', r)));
    await waitFor('m2 active with its hub up', () => {
      if (exited(master2)) throw new Error(`m2 exited:\n${master2.output}`);
      return /tunnel mode: node service on the tunnel only/.test(master2.output) || undefined;
    }, 30_000, 50);
    const hubUpMs = Date.now() - killedAt;
    // The same hub on the other host: its key, its address, the worker among its peers.
    assert.equal(lab.exec('m2', ['wg', 'show', ifname('m2'), 'public-key']).trim(), hubKey);
    assert.match(lab.exec('m2', ['ip', '-4', 'address', 'show', ifname('m2')]), /10\.8\.0\.1\/24/);
    assert.match(lab.exec('m2', ['wg', 'show', ifname('m2'), 'peers']), new RegExp(workerKey.replace(/[+/=]/g, '.')));
    await waitFor('the worker back online at m2', async () => {
      if (exited(worker)) throw new Error(`worker exited:\n${worker.output}`);
      const r = await cli('m2', ['nodes', '--json']);
      if (r.code !== 0) return undefined;
      return (JSON.parse(r.out) as { online: boolean }[]).some((n) => n.online) || undefined;
    }, 60_000, 250);
    const reconnectMs = Date.now() - killedAt;
    t.diagnostic(`m2's hub up ${hubUpMs} ms after the kill (lease 2 s); the worker online at m2 after ${reconnectMs} ms`);

    let delivered = 0;
    let duplicated = 0;
    const problems: string[] = [];
    for (const [i, tid] of ids.entries()) {
      const w = await cli('m2', ['wait', tid]);
      const info = JSON.parse((await cli('m2', ['get', tid, '--json'])).out) as EndedTaskInfo;
      const dir = join(home, `result-${tid}`);
      const r = await cli('m2', ['result', tid, '-o', `${dir}.tar.gz`, '--extract', dir]);
      let content = '';
      try {
        content = readFileSync(join(dir, 'r.txt'), 'utf8');
      } catch {
        // counted as not delivered below
      }
      const ok = w.code === 0 && info.state === 'succeeded' && r.code === 0 && content === `task-${i}\n`;
      const judged = judgeFailoverTask(tid, info, ok, outputs(), `${w.out} ${r.out}`);
      if (judged.delivered) delivered++;
      if (judged.duplicated) duplicated++;
      problems.push(...judged.problems);
    }
    recordScenario({ name: 'tunnel mode: active master killed -9, standby host took over', faults: 1, submitted: TASKS, delivered, lost: TASKS - delivered, duplicated });
    assert.deepEqual(problems, []);
    assert.equal(delivered, TASKS);
    assert.match(worker.output, /tunnel: moving the master peer to the next master/);
    assert.match(master2.output, /master lease taken: this master is active/);
    assert.ok(hubUpMs < 10_000, `m2's hub took ${hubUpMs} ms`);
  } catch (err) {
    throw new Error(`${String(err)}\n${outputs()}`, { cause: err });
  } finally {
    for (const p of [...procs].reverse()) await stopInNs(p);
    forwarder?.close();
    lab.destroy();
    rmSync(home, { recursive: true, force: true });
  }
});
