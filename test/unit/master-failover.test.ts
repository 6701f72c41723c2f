// Several masters (one store, one active, the others standby): the address list's checks (hostile
// values), the CLI's choice of the active one, and the worker's session moving from a dead or
// standby master to the next and back, with fakes.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { status } from '@grpc/grpc-js';
import { ManualClock } from '../../src/common/clock.js';
import { ConfigError } from '../../src/common/errors.js';
import { silentLogger } from '../../src/common/logger.js';
import { NoActiveMasterError, pickActiveMaster } from '../../src/client/active-master.js';
import { compileClientConfig } from '../../src/config/client-config.js';
import { MAX_MASTERS, parseMasterList } from '../../src/config/master-list.js';
import { compileWorkerConfig } from '../../src/config/worker-config.js';
import { compileMasterConfig } from '../../src/config/master-config.js';
import { NodeFacts } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { SubscribeRequest } from '../../src/protocol/gen/hivemind/v1/node.js';
import { Lifecycle } from '../../src/worker/lifecycle.js';
import type { MasterConnection } from '../../src/worker/master-connection.js';
import { MasterSession, nextMasterIndex } from '../../src/worker/master-session.js';
import { recordHostile } from '../helpers/fault-ledger.js';
import { FakeNode } from '../helpers/fake-monitored-node.js';
import { buildStatus } from '../../src/monitor/monitor-status.js';
import { waitFor } from '../helpers/cli-process.js';

function grpcError(code: status, details: string): Error {
  return Object.assign(new Error(`${code} ${status[code]}: ${details}`), { code, details });
}

const noMaster = { local: () => undefined, dev: () => undefined };

test('master list: one address, a comma-separated list, a list in the file; the worker and the CLI read it alike', () => {
  assert.deepEqual(parseMasterList('a:7070'), { addresses: ['a:7070'] });
  assert.deepEqual(parseMasterList('a:7070, b:7070'), { addresses: ['a:7070', 'b:7070'] });
  assert.deepEqual(parseMasterList(['[::1]:7070', '10.0.0.2:7070']), { addresses: ['[::1]:7070', '10.0.0.2:7070'] });
  assert.deepEqual(compileWorkerConfig({ env: { HIVEMIND_MASTER: 'a:1,b:2' }, flags: {} }).master, ['a:1', 'b:2']);
  assert.deepEqual(compileWorkerConfig({ file: { worker: { master: ['a:1', 'b:2'] } }, env: {}, flags: {} }).master, ['a:1', 'b:2']);
  assert.deepEqual(compileClientConfig({ env: {}, flags: { master: 'a:1,b:2', adminToken: 't' } }, noMaster).masters, ['a:1', 'b:2']);
  assert.deepEqual(compileClientConfig({ file: { client: { master: ['a:1', 'b:2'], adminToken: 't' } }, env: {}, flags: {} }, noMaster).masters, ['a:1', 'b:2']);
});

test('master list, hostile: too many, an empty entry, a bad port, an overlong entry, a repeat, a non-string: a precise config error naming the source', () => {
  const many = Array.from({ length: 1000 }, (_, i) => `10.0.${i >> 8}.${i & 255}:7070`).join(',');
  const cases: { what: string; value: unknown; message: RegExp }[] = [
    { what: '1,000 addresses', value: many, message: new RegExp(`1000 master addresses, at most ${MAX_MASTERS}`) },
    { what: 'an empty entry', value: 'a:1,,b:2', message: /entry 2: empty \(a stray comma\?\)/ },
    { what: 'a trailing comma', value: 'a:1,', message: /entry 2: empty/ },
    { what: 'port 0', value: 'a:1,b:0', message: /entry 2 "b:0": port 0 is not in 1-65535/ },
    { what: 'port 99999', value: 'a:99999', message: /port 99999 is not in 1-65535, received "a:99999"/ },
    { what: 'no port', value: 'a:1,b', message: /entry 2 "b": expected HOST:PORT/ },
    { what: 'a 10 kB entry', value: `a:1,${'x'.repeat(10_000)}:1`, message: /entry 2: 10002 characters, at most 262/ },
    { what: 'a repeated master', value: 'a:1,b:2,a:1', message: /entry 3 "a:1": repeats entry 1/ },
    { what: 'a number in the list', value: ['a:1', 7070], message: /entry 2: expected HOST:PORT, received number/ },
    { what: 'an object', value: { host: 'a' }, message: /expected HOST:PORT or a comma-separated list of them, received object/ },
    { what: 'control characters', value: 'a:1,b\n:2', message: /entry 2 "b\\x0a:2": expected HOST:PORT/ },
  ];
  for (const c of cases) {
    const asFlag = typeof c.value === 'string' ? { flags: { master: c.value } } : { file: { worker: { master: c.value } }, flags: {} };
    let worker: unknown;
    let client: unknown;
    try {
      compileWorkerConfig({ env: {}, ...asFlag });
    } catch (err) {
      worker = err;
    }
    try {
      const clientInput = typeof c.value === 'string' ? { flags: { master: c.value, adminToken: 't' } } : { file: { client: { master: c.value, adminToken: 't' } }, flags: {} };
      compileClientConfig({ env: {}, ...clientInput }, noMaster);
    } catch (err) {
      client = err;
    }
    const precise = (e: unknown) => e instanceof ConfigError && c.message.test(e.message) && /(flag --master|"(worker|client)\.master")/.test(e.message);
    recordHostile(`master list: ${c.what}`, !precise(worker) || !precise(client));
    assert.ok(precise(worker), `worker, ${c.what}: ${String(worker)}`);
    assert.ok(precise(client), `client, ${c.what}: ${String(client)}`);
    assert.ok((worker as Error).message.length < 400, `${c.what}: the message stays short`);
  }
});

test('the CLI picks the first master that answers as active; one master is not asked; none is a precise error', async () => {
  const asked: string[] = [];
  const answers: Record<string, Error | undefined> = {
    'standby:1': grpcError(status.UNAVAILABLE, 'standby master: live:3 is active'),
    'dead:2': grpcError(status.UNAVAILABLE, 'No connection established. Last error: connect ECONNREFUSED'),
    'slow:5': grpcError(status.DEADLINE_EXCEEDED, 'Deadline exceeded'),
    'live:3': undefined,
    'denied:4': grpcError(status.UNAUTHENTICATED, 'bad admin token'),
  };
  const probe = async (a: string) => {
    asked.push(a);
    const e = answers[a];
    if (e) throw e;
  };
  assert.equal(await pickActiveMaster(['standby:1', 'dead:2', 'slow:5', 'live:3'], probe), 'live:3');
  assert.deepEqual(asked, ['standby:1', 'dead:2', 'slow:5', 'live:3']);
  asked.length = 0;
  assert.equal(await pickActiveMaster(['only:9'], probe), 'only:9');
  assert.deepEqual(asked, [], 'one master: no extra call');
  // Any other answer is the command's own error, to be met on that master.
  assert.equal(await pickActiveMaster(['standby:1', 'denied:4', 'live:3'], probe), 'denied:4');
  await assert.rejects(pickActiveMaster(['standby:1', 'dead:2'], probe), (err: unknown) => {
    assert.ok(err instanceof NoActiveMasterError);
    assert.equal(err.code, 'NO_ACTIVE_MASTER');
    assert.match(err.message, /standby:1: .*standby master: live:3 is active.*; dead:2: .*ECONNREFUSED/);
    return true;
  });
});

test('next master: round and round, one master stays itself', () => {
  assert.deepEqual([0, 1, 2].map((i) => nextMasterIndex(i, 3)), [1, 2, 0]);
  assert.equal(nextMasterIndex(0, 1), 0);
});

/** Masters by address: each either answers Register or fails it; a connection's command stream can be dropped. */
class FakeMasters {
  readonly dials: string[] = [];
  readonly up = new Set<string>();
  readonly standby = new Set<string>();
  /** Masters that refuse this node's token. */
  readonly refusing = new Set<string>();
  private readonly drops = new Map<string, (err: Error) => void>();

  readonly factory = (address: string): MasterConnection => {
    this.dials.push(address);
    const conn = {
      register: async () => {
        if (this.refusing.has(address)) throw grpcError(status.UNAUTHENTICATED, 'unknown enrollment token');
        if (this.standby.has(address)) throw grpcError(status.UNAVAILABLE, `standby master: another master is active`);
        if (!this.up.has(address)) throw grpcError(status.UNAVAILABLE, 'connect ECONNREFUSED');
        return { nodeId: 'node-1', nodeCredential: 'cred-1', reportIntervalMs: 1000, masterVersion: 'test' };
      },
      openReportStream: () => ({ send: () => undefined, close: () => undefined }),
      subscribe: () => {
        let end!: (err: Error | undefined) => void;
        const closed = new Promise<Error | undefined>((r) => (end = r));
        this.drops.set(address, (err) => end(err));
        return { closed, close: () => end(undefined) };
      },
      close: () => undefined,
    };
    return conn as unknown as MasterConnection;
  };

  /** The master at `address` is killed: its stream ends and it no longer answers. */
  kill(address: string): void {
    this.up.delete(address);
    this.drops.get(address)?.(grpcError(status.UNAVAILABLE, 'Connection dropped'));
  }
}

async function session(t: TestContext, masters: FakeMasters, addresses: string[]): Promise<{ s: MasterSession; lifecycle: Lifecycle }> {
  const dataDir = await mkdtemp(path.join(os.tmpdir(), 'hm-failover-'));
  const lifecycle = new Lifecycle(silentLogger());
  const s = new MasterSession({
    connectionFactory: masters.factory,
    masterAddresses: addresses,
    dataDir,
    name: 'n',
    enrollmentToken: 'enroll',
    backoff: { initialMs: 2, maxMs: 4, factor: 2 },
    clock: new ManualClock(),
    logger: silentLogger(),
    lifecycle,
    identity: undefined,
    nodeFacts: () => NodeFacts.create({ hostname: 'h' }),
    onRegistered: () => undefined,
    settlePrevious: async () => undefined,
    catchUp: async () => undefined,
    subscribeRequest: () => ({ running: [], accepting: true }) as unknown as SubscribeRequest,
    onCommand: () => undefined,
    onConnected: () => undefined,
    onRemoved: async () => undefined,
  });
  t.after(async () => {
    await s.close();
    await rm(dataDir, { recursive: true, force: true });
  });
  return { s, lifecycle };
}

test('worker: given [dead, standby, live] it connects to live and stays there', async (t) => {
  const m = new FakeMasters();
  m.standby.add('standby:2');
  m.up.add('live:3');
  const { s, lifecycle } = await session(t, m, ['dead:1', 'standby:2', 'live:3']);
  await s.start();
  await waitFor('connected', () => lifecycle.state === 'connected', 4000, 2);
  assert.equal(s.masterAddress, 'live:3');
  assert.deepEqual(m.dials, ['dead:1', 'standby:2', 'live:3']);
});

test('worker: connected to A, moves to B when A is killed, and to A again when B dies later', async (t) => {
  const m = new FakeMasters();
  m.up.add('a:1');
  const { s, lifecycle } = await session(t, m, ['a:1', 'b:2']);
  await s.start();
  await waitFor('connected to A', () => lifecycle.state === 'connected' && s.masterAddress === 'a:1', 4000, 2);
  m.up.add('b:2'); // B takes over (the standby became active) as A dies
  m.kill('a:1');
  await waitFor('connected to B', () => lifecycle.state === 'connected' && s.masterAddress === 'b:2', 4000, 2);
  m.up.add('a:1'); // A restarted, B dies
  m.kill('b:2');
  await waitFor('connected to A again', () => lifecycle.state === 'connected' && s.masterAddress === 'a:1' && m.dials.length >= 3, 4000, 2);
  assert.deepEqual(m.dials.slice(0, 3), ['a:1', 'b:2', 'a:1']);
});

test('master --peer-masters: the other masters\' WireGuard endpoints in tunnel mode; alone, listing itself or too many is a precise error', () => {
  const tunnel = (peerMasters: string) => compileMasterConfig({ env: {}, flags: { wgEndpoint: 'a.example:51820', peerMasters } }).tunnel;
  assert.deepEqual(tunnel('b.example:51820,c.example:51820')!.peerEndpoints, ['b.example:51820', 'c.example:51820']);
  assert.deepEqual(compileMasterConfig({ env: {}, flags: { wgEndpoint: 'a.example:51820' } }).tunnel!.peerEndpoints, []);
  const cases: { what: string; run: () => unknown; message: RegExp }[] = [
    { what: 'without tunnel mode', run: () => compileMasterConfig({ env: {}, flags: { peerMasters: 'b:1' } }), message: /--peer-masters needs --wg-endpoint/ },
    { what: 'listing itself', run: () => tunnel('b:1,a.example:51820'), message: /lists this master's own --wg-endpoint a\.example:51820/ },
    { what: '8 peers', run: () => tunnel(Array.from({ length: 8 }, (_, i) => `p${i}:1`).join(',')), message: /lists 8 masters; with this one that is over 8/ },
    { what: '1,000 peers', run: () => tunnel(Array.from({ length: 1000 }, (_, i) => `p${i}:1`).join(',')), message: /flag --peer-masters: 1000 master addresses, at most 8/ },
    { what: 'a bad port', run: () => tunnel('b:70000'), message: /flag --peer-masters: port 70000 is not in 1-65535/ },
  ];
  for (const c of cases) {
    let err: unknown;
    try {
      c.run();
    } catch (e) {
      err = e;
    }
    const precise = err instanceof ConfigError && c.message.test(err.message);
    recordHostile(`master --peer-masters: ${c.what}`, !precise);
    assert.ok(precise, `${c.what}: ${String(err)}`);
  }
});

test('the monitor names the master the node is on now, not the first configured', () => {
  const node = Object.assign(new FakeNode(), { masterAddress: '10.0.0.2:7070', state: 'reconnecting', stateReason: 'standby master: x is active' });
  const store = { lastContribution: () => undefined, contributionTotal: () => ({ tasks: 0, cpuSeconds: 0, gpuSeconds: 0 }) } as unknown as Parameters<typeof buildStatus>[0]['store'];
  const v = buildStatus({ node, store, now: 1, tunnel: undefined, docker: { ok: true, message: '' }, running: [] });
  assert.equal(v.node.masterAddress, '10.0.0.2:7070');
  assert.ok(v.node.problems.includes('master 10.0.0.2:7070 not reachable: standby master: x is active'), v.node.problems.join('; '));
  const alone = buildStatus({ node: new FakeNode(), store, now: 1, tunnel: undefined, docker: { ok: true, message: '' }, running: [] });
  assert.equal(alone.node.masterAddress, '10.8.0.1:7070', 'a node without the field: its configured master');
});

test('worker: a refusal by the live master ends start() even when a dead master comes first in the list', async (t) => {
  const m = new FakeMasters();
  m.refusing.add('live:2');
  const { s } = await session(t, m, ['dead:1', 'live:2']);
  await assert.rejects(s.start(), /unknown enrollment token/);
  assert.deepEqual(m.dials, ['dead:1', 'live:2']);
});
