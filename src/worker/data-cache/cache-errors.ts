// The data cache's errors: each names the data set and what the operator or the task's author can do.
import { HivemindError } from '../../common/errors.js';

/** The data set cannot be made to fit the cache budget. Final for this node, not for the task. */
export class CacheFullError extends HivemindError {
  constructor(message: string) {
    super('CACHE_FULL', message);
  }
}

/** The bytes received do not hash to the digest asked for (after one fresh retry). */
export class DataCorruptError extends HivemindError {
  constructor(message: string) {
    super('DATA_CORRUPT', message);
  }
}

/** `cache rm` of an entry a task holds. */
export class CacheEntryInUseError extends HivemindError {
  constructor(message: string) {
    super('CACHE_ENTRY_IN_USE', message);
  }
}
