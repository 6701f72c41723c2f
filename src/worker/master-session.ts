// The worker's session with the master: connect, register, subscribe, and reconnect with
// backoff when the connection is lost. With several masters (one store, one active, the others
// standby) a lost or refused session moves on to the next address in order, and the node stays
// on the one that works: a standby answers UNAVAILABLE "standby master: …", a killed master does
// not answer, and either way the next address is the one to try. One Session per connection: alive until found broken,
// ready once subscribed; `lost` settles with the error that ended it.
import { backoffDelay, type BackoffOptions } from '../common/backoff.js';
import type { Clock } from '../common/clock.js';
import { AbortedError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { sleep } from '../common/sleep.js';
import { hivemindCodeOf, isRetryable, describeGrpcError } from '../protocol/grpc-errors.js';
import type { NodeFacts } from '../protocol/gen/hivemind/v1/common.js';
import type { NodeCommand, RegisterResponse, SubscribeRequest } from '../protocol/gen/hivemind/v1/node.js';
import { saveIdentity, type NodeIdentity } from './identity-file.js';
import type { Lifecycle } from './lifecycle.js';
import type { ConnectionFactory, MasterConnection, ReportSink, SubscriptionHandle } from './master-connection.js';

export interface Session {
  conn: MasterConnection;
  /** False once the connection was found broken; nothing new uses it. */
  alive: boolean;
  /** Subscribed: the node is connected in the lifecycle sense. */
  ready: boolean;
  reportSink?: ReportSink;
  subscription?: SubscriptionHandle;
  lost: Promise<Error>;
  markLost(err: Error): void;
}

export function createSession(conn: MasterConnection): Session {
  let resolveLost!: (err: Error) => void;
  const lost = new Promise<Error>((resolve) => (resolveLost = resolve));
  const session: Session = {
    conn,
    alive: true,
    ready: false,
    lost,
    markLost: (err) => {
      session.alive = false;
      session.ready = false;
      resolveLost(err);
    },
  };
  return session;
}

/**
 * The master to try after the one at `index` failed: the next in order, round and round. Whatever
 * the failure (a refused connection, a standby's answer, a dropped stream), the next master is
 * the better bet; the backoff between attempts is the loop's.
 */
export function nextMasterIndex(index: number, count: number): number {
  return count > 1 ? (index + 1) % count : 0;
}

export interface MasterSessionDeps {
  connectionFactory: ConnectionFactory;
  /** The masters in the order they are tried (at least one); they share one store, so one identity serves all. */
  masterAddresses: readonly string[];
  dataDir: string;
  /** The name Register carries (the node's name, or its hostname). */
  name: string;
  enrollmentToken: string | undefined;
  backoff: BackoffOptions;
  clock: Clock;
  logger: Logger;
  lifecycle: Lifecycle;
  /** The node's identity from an earlier registration, if any. */
  identity: NodeIdentity | undefined;
  nodeFacts(): NodeFacts;
  /** Registered: the master's answer (its report interval, say). */
  onRegistered(res: RegisterResponse): void;
  /** Waits out work still bound to the previous session (a pump delivering the outbox). */
  settlePrevious(): Promise<void>;
  /** With reports open, before subscribing: what the master must hear first (outbox, results). */
  catchUp(session: Session): Promise<void>;
  /**
   * What Subscribe carries: the tasks the master must not give up, free capacity, accepting, and
   * the gateway pipe (port and key) while it listens. Asked at each subscription, so a pipe that
   * opened or closed since is told at the next one.
   */
  subscribeRequest(): SubscribeRequest;
  onCommand(cmd: NodeCommand): void;
  /** Subscribed. */
  onConnected(): void;
  /** The master's operator removed this node: the loop ends after this. */
  onRemoved(reason: string): Promise<void>;
}

/**
 * The worker's side of the master: connect, register, open the report stream, catch up,
 * subscribe; on loss, reconnect with backoff until closed. Calls that need the master wait for
 * a ready session (withMaster).
 */
export class MasterSession {
  private current: Session | undefined;
  private readonly readyWaiters = new Set<(s: Session) => void>();
  private readonly stopping = new AbortController();
  private loop: Promise<void> | undefined;
  private identity: NodeIdentity | undefined;
  private readonly log: Logger;
  /** Index in deps.masterAddresses of the master tried or in use now. */
  private masterIndex = 0;

  constructor(private readonly deps: MasterSessionDeps) {
    if (deps.masterAddresses.length === 0) throw new Error('MasterSession needs at least one master address');
    this.identity = deps.identity;
    this.log = deps.logger;
  }

  /** The master tried or in use now (the monitor and the logs name it). */
  get masterAddress(): string {
    return this.deps.masterAddresses[this.masterIndex]!;
  }

  get started(): boolean {
    return this.loop !== undefined;
  }

  get nodeId(): string | undefined {
    return this.identity?.nodeId;
  }

  /** The session in use, if any (it may be found broken: check `alive`). */
  get session(): Session | undefined {
    return this.current;
  }

  /** Aborted when the worker closes: waits on the master end with it. */
  get closingSignal(): AbortSignal {
    return this.stopping.signal;
  }

  /**
   * Starts the connection loop. Resolves once connected, or once the first attempt failed in a
   * retryable way (the loop keeps retrying); rejects when the master refuses this node for good.
   */
  start(): Promise<void> {
    let settle!: { resolve: () => void; reject: (e: unknown) => void };
    const first = new Promise<void>((resolve, reject) => (settle = { resolve, reject }));
    this.loop = this.connectionLoop(settle);
    return first;
  }

  /** Stops the loop and closes the session in use. */
  async close(): Promise<void> {
    this.stopping.abort();
    this.teardown(this.current);
    await this.loop;
  }

  private async connectionLoop(first: { resolve: () => void; reject: (e: unknown) => void }): Promise<void> {
    const { lifecycle } = this.deps;
    let failures = 0;
    let firstSettled = false;
    // start() waits for one try of each master: a refusal by the live one must still end the
    // start even when a dead one comes first in the list.
    let firstRoundLeft = this.deps.masterAddresses.length;
    const stopped = new Promise<Error>((resolve) => {
      this.stopping.signal.addEventListener('abort', () => resolve(new AbortedError('worker closing')), { once: true });
    });
    while (!this.stopping.signal.aborted) {
      const address = this.masterAddress;
      if (lifecycle.is('starting', 'reconnecting')) lifecycle.transition('registering', `connecting to ${address}`);
      let session: Session | undefined;
      let reason: Error;
      try {
        session = createSession(this.deps.connectionFactory(address));
        await this.establish(session);
        this.log.info({ master: address }, 'connected to the master');
        failures = 0;
        if (!firstSettled) first.resolve();
        firstSettled = true;
        reason = await Promise.race([session.lost, stopped]);
      } catch (err) {
        reason = err instanceof Error ? err : new Error(String(err));
        session?.markLost(reason);
        if (!firstSettled && !isRetryable(err)) {
          // A refused token or credential at start is a configuration problem: report it
          // instead of retrying forever in silence.
          this.teardown(session);
          this.log.error({ err: describeGrpcError(err) }, 'the master refused this node');
          first.reject(err);
          return;
        }
        if (!firstSettled && --firstRoundLeft <= 0) {
          first.resolve();
          firstSettled = true;
        }
      }
      this.teardown(session);
      if (this.stopping.signal.aborted) break;
      if (hivemindCodeOf(reason) === 'NODE_REMOVED') {
        await this.deps.onRemoved(describeGrpcError(reason));
        return;
      }
      const level = isRetryable(reason) ? 'warn' : 'error';
      this.masterIndex = nextMasterIndex(this.masterIndex, this.deps.masterAddresses.length);
      this.log[level]({ err: describeGrpcError(reason), failures, master: address, next: this.masterAddress }, 'lost the master; reconnecting');
      if (!lifecycle.is('draining', 'reconnecting', 'stopped')) lifecycle.transition('reconnecting', describeGrpcError(reason));
      await sleep(backoffDelay(failures, this.deps.backoff), this.stopping.signal).catch(() => undefined);
      failures++;
    }
  }

  /** Register, open reports, catch up (outbox, pending results), then subscribe. */
  private async establish(session: Session): Promise<void> {
    const { conn } = session;
    const facts = this.deps.nodeFacts();
    const request = { name: this.deps.name, facts };
    const bearer = this.identity?.credential ?? this.deps.enrollmentToken!;
    const res = await conn.register(request, bearer);
    if (!this.identity || this.identity.nodeId !== res.nodeId || (res.nodeCredential && res.nodeCredential !== this.identity.credential)) {
      this.identity = {
        nodeId: res.nodeId,
        credential: res.nodeCredential || bearer,
        masterAddress: this.masterAddress,
        registeredAt: this.deps.clock.now(),
      };
      await saveIdentity(this.deps.dataDir, this.identity);
      this.log.info({ nodeId: res.nodeId }, 'registered with the master');
    }
    this.deps.onRegistered(res);

    // Wait out a pump still bound to a previous session so updates stay in order.
    await this.deps.settlePrevious();
    this.current = session;
    session.reportSink = conn.openReportStream((err) => session.markLost(err));
    await this.deps.catchUp(session);
    if (!session.alive) throw await session.lost;

    session.subscription = conn.subscribe(this.deps.subscribeRequest(), (cmd) => this.deps.onCommand(cmd));
    void session.subscription.closed.then((err) => session.markLost(err ?? new Error('the master ended the command stream')));
    session.ready = true;
    if (this.deps.lifecycle.is('registering')) this.deps.lifecycle.transition('connected', `node ${res.nodeId} subscribed`);
    for (const waiter of [...this.readyWaiters]) waiter(session);
    this.deps.onConnected();
  }

  private teardown(session: Session | undefined): void {
    if (!session) return;
    session.alive = false;
    session.ready = false;
    if (this.current === session) this.current = undefined;
    for (const [what, fn] of [
      ['subscription', () => session.subscription?.close()],
      ['report stream', () => session.reportSink?.close()],
      ['connection', () => session.conn.close()],
    ] as const) {
      try {
        fn();
      } catch (err) {
        this.log.warn({ err: errorMessage(err) }, `closing the ${what} failed`);
      }
    }
  }

  private waitForSession(signal: AbortSignal): Promise<Session> {
    if (this.current?.ready) return Promise.resolve(this.current);
    return new Promise((resolve, reject) => {
      const onAbort = () => {
        this.readyWaiters.delete(onReady);
        reject(new AbortedError('stopped waiting for the master', { cause: signal.reason }));
      };
      const onReady = (s: Session) => {
        this.readyWaiters.delete(onReady);
        signal.removeEventListener('abort', onAbort);
        resolve(s);
      };
      if (signal.aborted) return onAbort();
      this.readyWaiters.add(onReady);
      signal.addEventListener('abort', onAbort, { once: true });
    });
  }

  /**
   * Runs `fn` against the master, waiting for a connection and retrying transient failures
   * with backoff, until it succeeds, fails for good, or `signal` aborts.
   */
  async withMaster<T>(signal: AbortSignal, what: string, fn: (conn: MasterConnection) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      const session = await this.waitForSession(signal);
      try {
        return await fn(session.conn);
      } catch (err) {
        if (signal.aborted || !isRetryable(err)) throw err;
        this.log.warn({ err: describeGrpcError(err), attempt }, `${what} interrupted; retrying`);
        await sleep(backoffDelay(attempt, this.deps.backoff), signal);
      }
    }
  }
}
