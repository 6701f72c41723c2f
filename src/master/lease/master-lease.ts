// The lease loop of a master on PostgreSQL: a standby tries to take the lease every renewal period;
// the holder renews it as often, and stops serving (onLost) as soon as a renewal is refused or its
// own deadline (lease-timing.ts) passes without one. One instance per master process.
//
// States: 'standby' (trying to take the lease) → 'active' (holds it) → 'lost' (refused or ran out:
// final; the process is expected to exit and come back as a standby) ; any → 'closed' (close()).
import { errorMessage } from '../../common/errors.js';
import type { Logger } from '../../common/logger.js';
import type { LeaseStore } from './lease-store.js';
import { mustStopServing, type LeaseTiming } from './lease-timing.js';

export type LeaseState = 'standby' | 'active' | 'lost' | 'closed';

export interface MasterLeaseDeps {
  /** Opens the lease's own connection; called again after a failure (the database may have failed over). */
  openStore: () => LeaseStore;
  /** This process's name in the lease row (host, pid and a random part: unique per process). */
  holder: string;
  timing: LeaseTiming;
  log: Logger;
  /** Monotonic milliseconds. Default performance.now(). */
  monotonic?: () => number;
  /** Called once the lease is taken, with its epoch; the master loads its state and serves. */
  onAcquired: (epoch: number) => void;
  /** Called once when the lease is lost; the master must stop serving at once. */
  onLost: (reason: string) => void;
}

export class MasterLease {
  private state: LeaseState = 'standby';
  private store: LeaseStore | undefined;
  private timer: NodeJS.Timeout | undefined;
  private epochHeld = 0;
  private renewSentAt = 0;
  private activeHolder: string | undefined;
  private readonly monotonic: () => number;

  constructor(private readonly deps: MasterLeaseDeps) {
    this.monotonic = deps.monotonic ?? (() => performance.now());
  }

  get current(): LeaseState {
    return this.state;
  }

  /** The epoch held (0 unless active): the fencing token of this master's term. */
  get epoch(): number {
    return this.state === 'active' ? this.epochHeld : 0;
  }

  /**
   * Whether this master holds the lease now by its own clock: active and its deadline not passed.
   * Checked for every incoming call, so a process resumed after a freeze refuses calls even before
   * its overdue lease timer runs.
   */
  holdsNow(): boolean {
    return this.state === 'active' && !mustStopServing(this.renewSentAt, this.monotonic(), this.deps.timing);
  }

  /** Who holds the lease, as last seen by this standby ("none" before the first look). */
  get holder(): string {
    return this.activeHolder ?? 'none';
  }

  /** Starts trying to take the lease (the first try at once). */
  start(): void {
    if (this.timer || this.state !== 'standby') return;
    this.tick();
  }

  /** One step of the loop; public for tests (which drive it without timers). */
  tick(): void {
    if (this.state === 'standby') this.tryTake();
    else if (this.state === 'active') this.renew();
    if (this.state === 'standby' || this.state === 'active') {
      this.timer = setTimeout(() => this.tick(), this.deps.timing.renewEveryMs);
      this.timer.unref();
    }
  }

  /** Stops the loop; an active master gives the lease up so that the standby takes over at once. Idempotent. */
  close(): void {
    clearTimeout(this.timer);
    const was = this.state;
    this.state = 'closed';
    if (was === 'active' && this.store) {
      try {
        this.store.release(this.deps.holder, this.epochHeld);
        this.deps.log.info({ epoch: this.epochHeld }, 'master lease released');
      } catch (err) {
        this.deps.log.warn({ err: errorMessage(err) }, 'cannot release the master lease; the standby takes over when it ends');
      }
    }
    this.dropStore();
  }

  private tryTake(): void {
    const sentAt = this.monotonic();
    try {
      const claim = this.connected().tryAcquire(this.deps.holder, this.deps.timing.leaseMs);
      if (!claim.held) {
        if (claim.holder !== this.activeHolder) this.deps.log.info({ holder: claim.holder, remainingMs: claim.remainingMs }, 'standby: another master holds the lease');
        this.activeHolder = claim.holder;
        return;
      }
      this.state = 'active';
      this.epochHeld = claim.epoch;
      this.renewSentAt = sentAt;
      this.activeHolder = this.deps.holder;
      this.deps.log.info({ epoch: claim.epoch, holder: this.deps.holder }, 'master lease taken: this master is active');
    } catch (err) {
      this.deps.log.warn({ err: errorMessage(err) }, 'standby: cannot reach the database to take the lease; trying again');
      this.dropStore();
      return;
    }
    this.deps.onAcquired(this.epochHeld);
  }

  private renew(): void {
    // A frozen process (SIGSTOP, a long pause) resumes here: past its deadline it must not renew.
    if (mustStopServing(this.renewSentAt, this.monotonic(), this.deps.timing)) {
      this.lose(`no renewal of the master lease for ${Math.round(this.monotonic() - this.renewSentAt)} ms (lease ${this.deps.timing.leaseMs} ms)`);
      return;
    }
    const sentAt = this.monotonic();
    try {
      if (this.connected().renew(this.deps.holder, this.epochHeld, this.deps.timing.leaseMs)) {
        this.renewSentAt = sentAt;
        return;
      }
      this.lose(`the master lease (epoch ${this.epochHeld}) was taken over or had ended`);
    } catch (err) {
      this.dropStore();
      if (mustStopServing(this.renewSentAt, this.monotonic(), this.deps.timing)) {
        this.lose(`cannot renew the master lease before it ends: ${errorMessage(err)}`);
      } else {
        this.deps.log.warn({ err: errorMessage(err) }, 'cannot renew the master lease; trying again before it ends');
      }
    }
  }

  private lose(reason: string): void {
    this.state = 'lost';
    clearTimeout(this.timer);
    this.dropStore();
    this.deps.log.error({ epoch: this.epochHeld, reason }, 'master lease lost: this master stops serving');
    this.deps.onLost(reason);
  }

  private connected(): LeaseStore {
    this.store ??= this.deps.openStore();
    return this.store;
  }

  private dropStore(): void {
    try {
      this.store?.close();
    } catch {
      // a broken connection: nothing left to close
    }
    this.store = undefined;
  }
}
