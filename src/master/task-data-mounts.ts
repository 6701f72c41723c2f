// A submitted task's data mounts as the master stores them: each data set of the master's own is
// one it holds (size and kind taken from its store, whatever the submission said), an external one
// (url) is a file of unknown or declared size the node fetches itself. Pure over a narrow lookup.
import { formatBytes } from '../common/units.js';
import { formatDigest, parseDigest } from '../protocol/data-rules.js';
import { DataKind, type DataMount } from '../protocol/gen/hivemind/v1/common.js';
import { InvalidArgumentError } from './master-errors.js';

/** What the master holds of a data set (DataStore.get). */
export interface HeldDataLookup {
  get(sha256Hex: string): { size: number; kind: DataKind } | undefined;
}

/**
 * The mounts with size and kind filled in. Throws INVALID_ARGUMENT naming the first data set the
 * master does not hold, or an external one declared larger than `maxDataBytes`.
 */
export function resolveTaskData(mounts: readonly DataMount[], held: HeldDataLookup, maxDataBytes: number): DataMount[] {
  return mounts.map((m, i) => {
    if (m.url) {
      if (m.size > maxDataBytes) {
        throw new InvalidArgumentError(`spec.data[${i}].size is ${formatBytes(m.size)}, over this master's maximum of ${formatBytes(maxDataBytes)} for a data set`);
      }
      return { ...m, kind: DataKind.DATA_KIND_FILE };
    }
    const hex = parseDigest(m.sha256, `spec.data[${i}].sha256`);
    const row = held.get(hex);
    if (!row) {
      throw new InvalidArgumentError(`spec.data[${i}]: no data set ${formatDigest(hex)} at this master; put it with \`hivemind data put\` (or name an external source URL@sha256:HEX)`);
    }
    return { ...m, size: row.size, kind: row.kind };
  });
}
