// Services end to end (issue 19): a real master with its gateway and a real worker (processes,
// Docker), the test service image as replicas. A client reaches a replica only with a token; a
// streamed response arrives as it is produced; WebSocket passes; a client going away cancels the
// request upstream; the container reaches neither the host nor the master; kill -9 of the worker
// keeps the replica (reattached, not restarted, never doubled) and routing resumes; a crash loop
// backs off with a visible reason; an unhealthy replica leaves the rotation; rm leaves nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { requireDockerImage } from '../helpers/requirements.js';
import { ProcessCluster } from '../helpers/process-cluster.js';
import { waitFor } from '../helpers/cli-process.js';
import { recordHostile, recordScenario } from '../helpers/fault-ledger.js';

const IMAGE = 'hivemind/svc-test:1';
const SMALL = ['--cpus', '0.2', '--memory', '128m'];

interface ReplicaJson {
  index: number;
  taskId: string;
  attempt: number;
  state: string;
  health: string;
  healthy: boolean;
  restarts: number;
  lastExit: string;
  healthMessage: string;
  restartAtMs: number;
}
interface ServiceJson {
  name: string;
  endpoint: string;
  healthy: number;
  replicas: number;
  replicaList: ReplicaJson[];
  traffic?: { requests: number; errors: number };
}

/** Containers of the node `nodeId` whose replica env names `service` (other runs on this Docker are not counted). */
function replicaContainers(nodeId: string, service: string): string[] {
  const ids = execFileSync('docker', ['ps', '-q', '--filter', 'label=io.hivemind.managed=true', '--filter', `label=io.hivemind.node-id=${nodeId}`], { encoding: 'utf8' }).split('\n').filter(Boolean);
  return ids.filter((id) => execFileSync('docker', ['inspect', '-f', '{{range .Config.Env}}{{println .}}{{end}}', id], { encoding: 'utf8' }).split('\n').includes(`HIVEMIND_SERVICE=${service}`));
}

/** One HTTP/1.1 exchange over a raw socket, for the WebSocket handshake and frames. */
function wsEcho(base: URL, path: string, token: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(Number(base.port), base.hostname);
    let buf = Buffer.alloc(0);
    let upgraded = false;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no WebSocket echo; got ${JSON.stringify(buf.toString())}`));
    }, 10_000);
    s.on('connect', () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: ${base.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer ${token}\r\n\r\n`);
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!buf.subarray(0, end).toString().startsWith('HTTP/1.1 101')) {
          clearTimeout(timer);
          s.destroy();
          return reject(new Error(`no upgrade: ${buf.subarray(0, end).toString()}`));
        }
        upgraded = true;
        buf = buf.subarray(end + 4);
        const payload = Buffer.from(text);
        const mask = Buffer.from([1, 2, 3, 4]);
        const masked = Buffer.from(payload.map((b, i) => b ^ mask[i % 4]!));
        s.write(Buffer.concat([Buffer.from([0x81, 0x80 | payload.length]), mask, masked]));
      }
      if (buf.length >= 2 && buf.length >= 2 + (buf[1]! & 0x7f)) {
        clearTimeout(timer);
        s.destroy();
        resolve(buf.subarray(2, 2 + (buf[1]! & 0x7f)).toString());
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

test('services: created, reached through the gateway with a token, streamed, isolated, kept across a worker kill -9, restarted with backoff, removed', { timeout: 420_000 }, async (t) => {
  if (!requireDockerImage(t, IMAGE)) return;
  // A node timeout well above a worker's restart: the kill -9 below must find the replica reattached,
  // not given up as a lost node's (that case is the tunnel test's, test/netns/services-tunnel.test.ts).
  const cluster = await ProcessCluster.start({ reportInterval: '1s', maxTasks: 6, masterArgs: ['--node-timeout', '30s'] });
  try {
    let gw = new URL(await waitFor('the gateway URL', () => cluster.gatewayUrl(), 30_000));
    const nodeId = (JSON.parse((await cluster.cli(['nodes', '--json'])).stdout) as { nodeId: string }[])[0]!.nodeId;
    const get = async (name: string) => {
      const r = await cluster.cli(['service', 'get', name, '--json']);
      assert.equal(r.code, 0, r.stderr);
      return JSON.parse(r.stdout) as ServiceJson;
    };
    /** waitFor, and on a timeout the services as the CLI shows them and the end of the worker's log. */
    const until = async <T>(what: string, fn: () => Promise<T | undefined>, ms: number): Promise<T> => {
      try {
        return await waitFor(what, fn, ms, 300);
      } catch (err) {
        const ls = await cluster.cli(['service', 'ls']);
        const gets = await Promise.all(['web', 'crashy', 'sick'].map((n) => cluster.cli(['service', 'get', n])));
        throw new Error(`${(err as Error).message}\n${ls.stdout}\n${gets.map((g) => g.stdout + g.stderr).join('\n')}\nworker log (end):\n${cluster.worker!.output.slice(-6000)}`);
      }
    };
    const healthy = (name: string, n: number) => until(`${n} healthy replica(s) of ${name}`, async () => {
      const s = await get(name);
      return s.healthy === n ? s : undefined;
    }, 120_000);

    const created = await cluster.cli(['service', 'create', 'web', '--image', IMAGE, '--port', '8000', '--health', '/health', ...SMALL, '--json']);
    assert.equal(created.code, 0, created.stderr);
    const web = await healthy('web', 1);
    assert.equal(web.endpoint, `${gw.origin}/s/web/`);
    const tok = await cluster.cli(['service', 'token', 'create', 'web', '--label', 'e2e']);
    assert.equal(tok.code, 0, tok.stderr);
    const token = tok.stdout.trim();
    assert.match(token, /^hmsvc_[0-9a-f]{64}$/);
    const auth = { authorization: `Bearer ${token}` };

    await t.test('no token, a wrong token: 401; with the token the replica answers and never sees it', async () => {
      const none = await fetch(`${gw.origin}/s/web/hello`);
      const wrong = await fetch(`${gw.origin}/s/web/hello`, { headers: { authorization: `Bearer hmsvc_${'0'.repeat(64)}` } });
      recordHostile('gateway end to end: a request without a token', none.status !== 401);
      recordHostile('gateway end to end: a request with a wrong token', wrong.status !== 401);
      assert.equal(none.status, 401);
      assert.equal(wrong.status, 401);
      const ok = await fetch(`${gw.origin}/s/web/hello?x=1`, { headers: auth });
      assert.equal(ok.status, 200);
      const hello = (await ok.json()) as { url: string; headers: Record<string, string>; replica: string };
      assert.equal(hello.url, '/hello?x=1');
      assert.equal(hello.headers.authorization, undefined, 'the client token is not forwarded');
      assert.equal(hello.headers['x-forwarded-prefix'], '/s/web');
      assert.equal(hello.replica, '0');
    });

    await t.test('a streamed response arrives as it is produced (SSE), WebSocket passes, a request body streams', async () => {
      const t0 = Date.now();
      const res = await fetch(`${gw.origin}/s/web/sse?n=15&ms=100`, { headers: auth });
      assert.equal(res.status, 200);
      const reader = res.body!.getReader();
      let first = 0;
      let text = '';
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        if (!first) first = Date.now() - t0;
        text += Buffer.from(value).toString();
      }
      const last = Date.now() - t0;
      assert.equal(text.match(/^data: token \d+$/gm)?.length, 15, text);
      assert.ok(first < last - 800, `first byte after ${first} ms, last after ${last} ms: not streamed`);
      assert.equal(await wsEcho(gw, '/s/web/ws', token, 'hello ws'), 'echo: hello ws');
      const body = 'x'.repeat(200_000);
      const echo = await fetch(`${gw.origin}/s/web/echo`, { method: 'POST', headers: auth, body });
      assert.equal(await echo.text(), body);
    });

    await t.test('a client that goes away cancels the request at the replica', async () => {
      const ac = new AbortController();
      const pending = fetch(`${gw.origin}/s/web/slow`, { headers: auth, signal: ac.signal }).catch(() => undefined);
      await new Promise((r) => setTimeout(r, 500));
      ac.abort();
      await pending;
      await waitFor('the replica to see the request closed', async () => {
        const c = (await (await fetch(`${gw.origin}/s/web/closed`, { headers: auth })).json()) as { closed: number };
        return c.closed >= 1 || undefined;
      }, 10_000, 200);
    });

    await t.test('the container reaches neither the host, the master, nor another address', async () => {
      const masterPort = Number(cluster.address.split(':')[1]);
      const hostIps = Object.values(networkInterfaces()).flat().filter((a) => a && a.family === 'IPv4' && !a.internal).map((a) => a!.address);
      const targets = [['127.0.0.1', masterPort], ['127.0.0.1', Number(gw.port)], ...hostIps.map((ip) => [ip, masterPort]), ...hostIps.map((ip) => [ip, 22])] as [string, number][];
      let reached = 0;
      for (const [host, port] of targets) {
        const p = (await (await fetch(`${gw.origin}/s/web/probe?host=${host}&port=${port}`, { headers: auth })).json()) as { reachable: boolean; error: string };
        if (p.reachable) reached++;
        assert.equal(p.reachable, false, `the replica reached ${host}:${port}`);
      }
      recordHostile('service container: connections to the host, the master and the gateway', reached, targets.length);
    });

    await t.test('kill -9 of the worker: the replica keeps running, is reattached (not restarted, not doubled), a request in flight fails cleanly, routing resumes', async () => {
      const before = (await (await fetch(`${gw.origin}/s/web/hello`, { headers: auth })).json()) as { boot: string; replica: string };
      const beforeInfo = await get('web');
      const inflight = fetch(`${gw.origin}/s/web/stream?n=200&ms=100`, { headers: auth }).then(async (r) => {
        try {
          await r.text();
          return 'complete';
        } catch {
          return 'cut';
        }
      }, () => 'refused');
      await new Promise((r) => setTimeout(r, 700));
      await cluster.worker!.stop('SIGKILL');
      const t0 = Date.now();
      const inflightEnd = await inflight;
      const inflightMs = Date.now() - t0;
      assert.equal(replicaContainers(nodeId, 'web').length, 1, 'the container outlives the worker');
      await cluster.startWorker({ maxTasks: 6 });
      // The master lists the killed node online, its replica healthy, until its reports are missed:
      // routing resumes once the new worker has reattached the replica and subscribed with its pipe.
      const restarted = Date.now();
      const hello = await until('the gateway to route to the reattached replica', async () => {
        const r = await fetch(`${gw.origin}/s/web/hello`, { headers: auth }).catch(() => undefined);
        return r?.status === 200 ? ((await r.json()) as { boot: string; replica: string }) : undefined;
      }, 30_000);
      t.diagnostic(`routing resumed ${Date.now() - restarted} ms after the worker started again`);
      const after = await healthy('web', 1);
      const doubled = replicaContainers(nodeId, 'web').length !== 1 || after.replicaList.length !== 1;
      recordScenario({ name: 'service: worker kill -9 under a replica with a request in flight', faults: 1, submitted: 1, delivered: hello.boot === before.boot ? 1 : 0, lost: hello.boot === before.boot ? 0 : 1, duplicated: doubled ? 1 : 0 });
      assert.equal(inflightEnd, 'cut', 'the request in flight fails, it does not hang or pretend to complete');
      assert.ok(inflightMs < 10_000, `the request in flight ended ${inflightMs} ms after the kill`);
      assert.equal(hello.boot, before.boot, 'the same container answers');
      assert.equal(after.replicaList[0]!.taskId, beforeInfo.replicaList[0]!.taskId);
      assert.equal(after.replicaList[0]!.attempt, beforeInfo.replicaList[0]!.attempt, 'the same attempt');
      assert.equal(after.replicaList[0]!.restarts, 0);
      assert.ok(!doubled, 'one container, one replica');
    });

    await t.test('a master restart leaves the replica running and routes to it again', async () => {
      const before = (await (await fetch(`${gw.origin}/s/web/hello`, { headers: auth })).json()) as { boot: string; replica: string };
      await cluster.master.stop('SIGTERM');
      await cluster.restartMaster();
      const url = new URL(await waitFor('the restarted gateway', () => cluster.gatewayUrl(), 30_000));
      gw = url;
      const hello = await until('the gateway to route to the replica again', async () => {
        const r = await fetch(`${gw.origin}/s/web/hello`, { headers: auth }).catch(() => undefined);
        return r?.status === 200 ? ((await r.json()) as { boot: string; replica: string }) : undefined;
      }, 60_000);
      assert.equal(hello.boot, before.boot, 'the same container, not a new one');
      assert.equal(replicaContainers(nodeId, 'web').length, 1);
    });

    await t.test('a crash loop backs off with a visible reason; an unhealthy replica leaves the rotation', async () => {
      assert.equal((await cluster.cli(['service', 'create', 'crashy', '--image', IMAGE, '--port', '8000', ...SMALL, '--', 'crash'])).code, 0);
      assert.equal((await cluster.cli(['service', 'create', 'sick', '--image', IMAGE, '--port', '8000', '--health', '/health', '--public', ...SMALL, '--', 'unhealthy-after', '4'])).code, 0);
      const crashy = await until('crashy to restart twice', async () => {
        const r = (await get('crashy')).replicaList[0];
        return r && r.restarts >= 2 ? r : undefined;
      }, 90_000);
      assert.match(crashy.lastExit, /exited with code 3/);
      assert.equal(crashy.healthy, false);
      const sick = await until('sick to turn unhealthy', async () => {
        const r = (await get('sick')).replicaList[0];
        return r && r.state === 'running' && !r.healthy && /500/.test(r.healthMessage) ? r : undefined;
      }, 90_000);
      assert.equal(sick.healthy, false);
      const res = await fetch(`${gw.origin}/s/sick/hello`);
      assert.equal(res.status, 503, 'no healthy replica: 503');
      const noToken = await fetch(`${gw.origin}/s/crashy/hello`);
      assert.equal(noToken.status, 401, 'crashy is not public');
    });

    await t.test('a service mounts a data set read-only, as a task does; data rm is refused while it runs', async () => {
      const file = join(cluster.home, 'model.txt');
      writeFileSync(file, 'weights v1\n');
      const put = await cluster.cli(['data', 'put', file, '--name', 'model']);
      assert.equal(put.code, 0, put.stderr);
      const made = await cluster.cli(['service', 'create', 'withdata', '--image', IMAGE, '--port', '8000', '--health', '/health', '--public', '--data', 'model:/models/model.txt', ...SMALL]);
      assert.equal(made.code, 0, made.stderr);
      await healthy('withdata', 1);
      const r = (await (await fetch(`${gw.origin}/s/withdata/file?path=/models/model.txt`)).json()) as { content: string; write: string };
      recordHostile('service container: a write into its mounted data set', r.write === 'written');
      assert.equal(r.content, 'weights v1\n');
      assert.notEqual(r.write, 'written');
      const rm = await cluster.cli(['data', 'rm', 'model']);
      assert.notEqual(rm.code, 0, 'data rm is refused while a replica mounts it');
      assert.equal((await cluster.cli(['service', 'rm', 'withdata', '--wait'], 120_000)).code, 0);
    });

    await t.test('scale to 2 spreads requests; rm stops every replica and leaves no container', async () => {
      assert.equal((await cluster.cli(['service', 'scale', 'web', '2'])).code, 0);
      await healthy('web', 2);
      const seen = new Set<string>();
      for (let i = 0; i < 10; i++) seen.add(((await (await fetch(`${gw.origin}/s/web/hello`, { headers: auth })).json()) as { boot: string; replica: string }).replica);
      assert.deepEqual([...seen].sort(), ['0', '1'], 'both replicas answered');
      const info = await get('web');
      assert.ok((info.traffic?.requests ?? 0) >= 10, JSON.stringify(info.traffic));
      for (const name of ['web', 'crashy', 'sick']) {
        const rm = await cluster.cli(['service', 'rm', name, '--wait'], 120_000);
        assert.equal(rm.code, 0, rm.stderr);
      }
      assert.equal((await fetch(`${gw.origin}/s/web/hello`, { headers: auth })).status, 404);
      await waitFor('no replica container left', () => (['web', 'crashy', 'sick', 'withdata'].every((n) => replicaContainers(nodeId, n).length === 0) ? true : undefined), 30_000, 300);
      const ls = JSON.parse((await cluster.cli(['service', 'ls', '--json'])).stdout) as unknown[];
      assert.equal(ls.length, 0);
    });
  } finally {
    await cluster.close();
  }
});
