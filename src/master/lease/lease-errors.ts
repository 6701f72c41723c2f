// The error of a master that no longer holds the lease (two masters on PostgreSQL).
import { HivemindError } from '../../common/errors.js';

/** A write that only the lease holder may make was refused: another master is (or may be) active. */
export class LeaseLostError extends HivemindError {
  constructor(message: string) {
    super('LEASE_LOST', message);
  }
}
