// Reclaiming data sets removed at the master from the nodes that cache them: a report listing a
// removed digest is answered with a drop_data command on the node's command stream (the Report
// stream's own ack comes only when that stream ends, far too late to carry it).
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import { DIGEST_PREFIX, formatDigest } from '../protocol/data-rules.js';
import type { ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { NodeRegistry } from './registry.js';

export interface DataReclaimDeps {
  /** Which of these digests (64 hex digits each) were removed at the master (DataStore.removedAmong). */
  removedData: { removedAmong(sha256Hex: readonly string[]): string[] };
  registry: Pick<NodeRegistry, 'sink'>;
  log: Logger;
}

/**
 * Tells the node to drop the data sets its (validated) report lists that were removed here. Sent
 * with every report still listing one: the node drops each once no task of its own holds it.
 * Returns the digests named.
 */
export function dropRemovedData(nodeId: string, r: ResourceReport, d: DataReclaimDeps): string[] {
  if (!r.cache || r.cache.held.length === 0) return [];
  const removed = d.removedData.removedAmong(r.cache.held.map((h) => h.sha256.slice(DIGEST_PREFIX.length))).map(formatDigest);
  const sink = d.registry.sink(nodeId);
  if (removed.length === 0 || !sink) return [];
  d.log.info({ nodeId, count: removed.length }, 'telling the node to drop data sets removed at the master');
  try {
    sink.send({ command: { $case: 'dropData', value: { sha256: removed } } });
  } catch (err) {
    d.log.warn({ nodeId, err: errorMessage(err) }, 'could not send drop_data; the next report repeats it');
  }
  return removed;
}
