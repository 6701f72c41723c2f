// The master lease without a database: the timing rules, the lease loop's states against a fake
// lease store and a hand-moved monotonic clock, and the standby guard on a loopback gRPC server
// (unary and streaming calls refused with UNAVAILABLE "standby master: …" before any handler).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Server, ServerCredentials, credentials, makeGenericClientConstructor, status, type ServiceDefinition, type ServiceError } from '@grpc/grpc-js';
import { silentLogger } from '../../src/common/logger.js';
import { ConfigError } from '../../src/common/errors.js';
import { leaseTiming, mustStopServing, DEFAULT_LEASE_MS } from '../../src/master/lease/lease-timing.js';
import { MasterLease } from '../../src/master/lease/master-lease.js';
import type { LeaseClaim, LeaseStore } from '../../src/master/lease/lease-store.js';
import { standbyGuard, STANDBY_MESSAGE_PREFIX } from '../../src/master/lease/standby-guard.js';

test('lease timing: a fifth of the lease between renewals, and the holder stops one renewal before the end', () => {
  const t = leaseTiming();
  assert.deepEqual(t, { leaseMs: DEFAULT_LEASE_MS, renewEveryMs: 1000, safetyMarginMs: 1000 });
  assert.equal(mustStopServing(0, 3999, t), false);
  assert.equal(mustStopServing(0, 4000, t), true);
  assert.throws(() => leaseTiming(999), (e: unknown) => e instanceof ConfigError && /--lease must be at least 1s, got 0.999s/.test(e.message));
  assert.throws(() => leaseTiming(Number.NaN), ConfigError);
});

/** A lease row kept in memory with its own clock (the database's), as SqlLeaseStore keeps it. */
class FakeLeaseStore implements LeaseStore {
  row: { holder: string; epoch: number; expiresAt: number } | undefined;
  failing = false;
  closed = 0;
  constructor(public dbNow: () => number) {}
  tryAcquire(holder: string, leaseMs: number): LeaseClaim {
    this.check();
    const now = this.dbNow();
    if (this.row && this.row.expiresAt > now) return { held: false, holder: this.row.holder, remainingMs: this.row.expiresAt - now };
    this.row = { holder, epoch: (this.row?.epoch ?? 0) + 1, expiresAt: now + leaseMs };
    return { held: true, epoch: this.row.epoch };
  }
  renew(holder: string, epoch: number, leaseMs: number): boolean {
    this.check();
    const now = this.dbNow();
    if (!this.row || this.row.holder !== holder || this.row.epoch !== epoch || this.row.expiresAt <= now) return false;
    this.row.expiresAt = now + leaseMs;
    return true;
  }
  release(holder: string, epoch: number): void {
    this.check();
    if (this.row?.holder === holder && this.row.epoch === epoch) this.row.expiresAt = this.dbNow();
  }
  close(): void {
    this.closed++;
  }
  private check(): void {
    if (this.failing) throw new Error('connection refused');
  }
}

function leaseOf(store: FakeLeaseStore, holder: string, clock: { t: number }) {
  const events: string[] = [];
  const lease = new MasterLease({
    openStore: () => store,
    holder,
    timing: leaseTiming(5000),
    log: silentLogger(),
    monotonic: () => clock.t,
    onAcquired: (epoch) => events.push(`acquired ${epoch}`),
    onLost: (reason) => events.push(`lost: ${reason}`),
  });
  return { lease, events };
}

test('two masters: the first takes the lease, the second stays standby naming it, and takes over only once it has ended', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  const a = leaseOf(store, 'a', clock);
  const b = leaseOf(store, 'b', clock);
  a.lease.tick();
  b.lease.tick();
  assert.deepEqual([a.lease.current, a.lease.epoch, a.events], ['active', 1, ['acquired 1']]);
  assert.deepEqual([b.lease.current, b.lease.holder, b.events], ['standby', 'a', []]);
  // a renews every second: b never gets it
  for (let i = 0; i < 10; i++) {
    clock.t += 1000;
    a.lease.tick();
    b.lease.tick();
  }
  assert.equal(b.lease.current, 'standby');
  // a is killed: b waits out the whole lease (5 s after a's last renewal), not a moment less
  const killedAt = clock.t;
  while (b.lease.current === 'standby') {
    clock.t += 100;
    b.lease.tick();
  }
  assert.equal(clock.t - killedAt, 5000);
  assert.deepEqual([b.lease.epoch, b.events], [2, ['acquired 2']]);
  for (const l of [a, b]) l.lease.close();
});

test('a holder that cannot renew stops serving before its lease ends, so never together with the next one', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  const a = leaseOf(store, 'a', clock);
  a.lease.tick();
  store.failing = true;
  clock.t += 1000;
  a.lease.tick();
  clock.t += 1000;
  a.lease.tick();
  clock.t += 1000;
  a.lease.tick();
  assert.equal(a.lease.current, 'active', 'still within the lease: renewals are retried');
  clock.t += 1000;
  a.lease.tick();
  assert.equal(a.lease.current, 'lost');
  assert.match(a.events[1]!, /^lost: no renewal of the master lease for 4000 ms \(lease 5000 ms\)$/);
  // By the database's clock the lease still runs: nobody else can hold it yet.
  assert.ok(store.row!.expiresAt > clock.t);
  // The connection was dropped on each of the 3 failed renewals, reopened on the next try.
  assert.equal(store.closed, 3);
});

test('a frozen holder that resumes past its deadline does not renew; a lease taken over is lost at the next renewal', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  const a = leaseOf(store, 'a', clock);
  a.lease.tick();
  clock.t += 4500; // frozen (SIGSTOP): the lease still runs by the database, but a is past its own deadline
  a.lease.tick();
  assert.equal(a.lease.current, 'lost');
  assert.match(a.events[1]!, /no renewal of the master lease for 4500 ms/);
  assert.equal(store.row!.expiresAt, 5000, 'not renewed');

  const c = leaseOf(store, 'c', clock);
  clock.t = 5000;
  c.lease.tick();
  assert.equal(c.lease.current, 'active');
  store.row = { holder: 'd', epoch: 9, expiresAt: clock.t + 5000 }; // taken by hand
  clock.t += 1000;
  c.lease.tick();
  assert.deepEqual([c.lease.current, c.events[1]], ['lost', 'lost: the master lease (epoch 2) was taken over or had ended']);
});

test('close() of an active master releases the lease at once; a standby\'s close() leaves it alone', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  const a = leaseOf(store, 'a', clock);
  const b = leaseOf(store, 'b', clock);
  a.lease.tick();
  b.lease.tick();
  b.lease.close();
  assert.equal(store.row!.expiresAt, 5000);
  a.lease.close();
  a.lease.close();
  assert.equal(store.row!.expiresAt, 0);
  assert.equal(a.lease.current, 'closed');
  const c = leaseOf(store, 'c', clock);
  c.lease.tick();
  assert.equal(c.lease.current, 'active');
  c.lease.close();
});

test('a standby that cannot reach the database keeps trying', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  store.failing = true;
  const a = leaseOf(store, 'a', clock);
  a.lease.tick();
  assert.equal(a.lease.current, 'standby');
  store.failing = false;
  a.lease.tick();
  assert.equal(a.lease.current, 'active');
  a.lease.close();
});

// A service of two methods, raw bytes both ways, standing for the master's services.
const bytes = { serialize: (b: Buffer) => b, deserialize: (b: Buffer) => b };
const probe: ServiceDefinition = {
  Unary: { path: '/test.Probe/Unary', requestStream: false, responseStream: false, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
  Stream: { path: '/test.Probe/Stream', requestStream: true, responseStream: true, requestSerialize: bytes.serialize, requestDeserialize: bytes.deserialize, responseSerialize: bytes.serialize, responseDeserialize: bytes.deserialize },
};

test('standby guard: every call is refused with UNAVAILABLE "standby master: <holder> is active" before any handler; served once active', async () => {
  let serving = false;
  let handled = 0;
  const server = new Server({ interceptors: [standbyGuard({ serving: () => serving, activeHolder: () => 'host-a:41:abc' })] });
  server.addService(probe, {
    Unary: (_call: unknown, cb: (e: null, v: Buffer) => void) => {
      handled++;
      cb(null, Buffer.from('ok'));
    },
    Stream: (call: { on: (e: string, f: (b: Buffer) => void) => void; write: (b: Buffer) => void; end: () => void }) => {
      handled++;
      call.on('data', (b) => call.write(b));
      call.on('end', () => call.end());
    },
  });
  const port = await new Promise<number>((resolve, reject) => server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))));
  const Client = makeGenericClientConstructor(probe, 'Probe');
  const client = new Client(`127.0.0.1:${port}`, credentials.createInsecure()) as unknown as {
    Unary: (b: Buffer, cb: (e: ServiceError | null, v?: Buffer) => void) => void;
    Stream: () => { write: (b: Buffer) => void; end: () => void; on: (e: string, f: (x: never) => void) => void };
    close: () => void;
  };
  const unary = () => new Promise<{ err: ServiceError | null; value?: Buffer }>((resolve) => client.Unary(Buffer.from('hi'), (err, value) => resolve({ err, ...(value ? { value } : {}) })));
  const stream = () => new Promise<{ err: ServiceError | undefined; got: string }>((resolve) => {
    const s = client.Stream();
    let got = '';
    s.on('data', (b: Buffer) => (got += b.toString()));
    s.on('error', (err: ServiceError) => resolve({ err, got }));
    s.on('end', () => resolve({ err: undefined, got }));
    s.write(Buffer.from('x'));
    s.end();
  });
  try {
    const u = await unary();
    assert.equal(u.err?.code, status.UNAVAILABLE);
    assert.equal(u.err?.details, 'standby master: host-a:41:abc is active');
    assert.ok(u.err.details.startsWith(STANDBY_MESSAGE_PREFIX));
    const s = await stream();
    assert.deepEqual([s.err?.code, s.err?.details, s.got], [status.UNAVAILABLE, 'standby master: host-a:41:abc is active', '']);
    assert.equal(handled, 0, 'no handler ran on the standby');
    serving = true;
    assert.equal((await unary()).value?.toString(), 'ok');
    assert.deepEqual(await stream(), { err: undefined, got: 'x' });
    assert.equal(handled, 2);
  } finally {
    client.close();
    server.forceShutdown();
  }
});

test('holdsNow: true only while active and before the holder\'s own deadline (a resumed process refuses calls before its timer runs)', () => {
  const clock = { t: 0 };
  const store = new FakeLeaseStore(() => clock.t);
  const a = leaseOf(store, 'a', clock);
  assert.equal(a.lease.holdsNow(), false, 'standby');
  a.lease.tick();
  assert.equal(a.lease.holdsNow(), true);
  clock.t += 3999;
  assert.equal(a.lease.holdsNow(), true);
  clock.t += 1;
  assert.equal(a.lease.holdsNow(), false, 'past its deadline, no tick needed');
  assert.equal(a.lease.current, 'active');
  a.lease.close();
});
