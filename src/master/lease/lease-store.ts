// Where the master lease is kept: one row in the master's PostgreSQL database (table master_lease,
// migration 2 of pg-migrations.ts). Every time is the database's now(), never a host's clock, so
// two masters with skewed clocks still agree on when a lease ends. `epoch` grows by one each time
// the lease changes hands: the holder's fencing token.
import type { SqlDriver } from '../sql/sql-driver.js';

/** What a master learns from trying to take the lease. */
export type LeaseClaim =
  | { held: true; epoch: number }
  | { held: false; holder: string; remainingMs: number };

export interface LeaseStore {
  /** Takes the lease for `holder` when it is free or has ended; otherwise says who holds it. */
  tryAcquire(holder: string, leaseMs: number): LeaseClaim;
  /** Extends the lease; false when `holder` no longer holds epoch `epoch` or the lease had already ended. */
  renew(holder: string, epoch: number, leaseMs: number): boolean;
  /** Ends the lease now if `holder` still holds epoch `epoch` (a clean shutdown: the standby need not wait). */
  release(holder: string, epoch: number): void;
  close(): void;
}

interface LeaseRow {
  holder: string;
  remaining_ms: number;
}

export class SqlLeaseStore implements LeaseStore {
  constructor(private readonly db: SqlDriver) {}

  tryAcquire(holder: string, leaseMs: number): LeaseClaim {
    // One statement: the row is created on first use, and taken over only once it has ended; two
    // standbys racing are serialised by the row lock, and the loser's WHERE no longer matches.
    const won = this.db.prepare(
      `INSERT INTO master_lease (id, holder, epoch, expires_at) VALUES (1, ?, 1, now() + (?::bigint * interval '1 millisecond'))
       ON CONFLICT (id) DO UPDATE SET holder = EXCLUDED.holder, epoch = master_lease.epoch + 1, expires_at = EXCLUDED.expires_at
       WHERE master_lease.expires_at <= now()
       RETURNING epoch`,
    ).get(holder, leaseMs) as { epoch: number } | undefined;
    if (won) return { held: true, epoch: Number(won.epoch) };
    const row = this.db.prepare(
      `SELECT holder, GREATEST(0, FLOOR(EXTRACT(EPOCH FROM (expires_at - now())) * 1000))::bigint AS remaining_ms FROM master_lease WHERE id = 1`,
    ).get() as LeaseRow | undefined;
    // Gone between the two statements (only by hand): the next try takes it.
    return { held: false, holder: row?.holder ?? 'none', remainingMs: Number(row?.remaining_ms ?? 0) };
  }

  renew(holder: string, epoch: number, leaseMs: number): boolean {
    // An ended lease is not revived even when nobody took it: its holder has already stopped serving.
    const r = this.db.prepare(
      `UPDATE master_lease SET expires_at = now() + (?::bigint * interval '1 millisecond')
       WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > now()`,
    ).run(leaseMs, holder, epoch);
    return r.changes === 1;
  }

  release(holder: string, epoch: number): void {
    this.db.prepare('UPDATE master_lease SET expires_at = now() WHERE id = 1 AND holder = ? AND epoch = ? AND expires_at > now()').run(holder, epoch);
  }

  close(): void {
    this.db.close();
  }
}
