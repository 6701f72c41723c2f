// `hivemind service rm NAME --wait`: after RemoveService, polls GetService until the master no
// longer knows the service (NOT_FOUND), for at most the replicas' grace period plus 30 s.
import { status } from '@grpc/grpc-js';
import { setTimeout as sleep } from 'node:timers/promises';
import { HivemindError } from '../common/errors.js';
import { MasterCallError } from '../client/admin-client.js';
import type { ServiceInfo } from '../protocol/gen/hivemind/v1/admin.js';

/** Beyond the grace period: time for the master to send the stops and hear that the replicas ended. */
export const REMOVAL_MARGIN_MS = 30_000;
export const REMOVAL_POLL_MS = 1000;

/** The service was still there when --wait gave up. */
export class RemovalTimeoutError extends HivemindError {
  constructor(message: string) {
    super('SERVICE_REMOVAL_TIMEOUT', message);
  }
}

export interface RemovalClock {
  now(): number;
  sleep(ms: number, signal?: AbortSignal): Promise<void>;
}

export const systemRemovalClock: RemovalClock = { now: () => Date.now(), sleep: (ms, signal) => sleep(ms, undefined, { signal }) };

function isNotFound(err: unknown): boolean {
  return err instanceof MasterCallError && err.status === status.NOT_FOUND;
}

/**
 * Resolves once `get` answers NOT_FOUND; any other failure is thrown as it is. `removed` is the
 * RemoveService answer: its grace period sets the deadline.
 */
export async function waitUntilRemoved(
  get: (name: string) => Promise<ServiceInfo>,
  removed: ServiceInfo,
  clock: RemovalClock = systemRemovalClock,
  signal?: AbortSignal,
): Promise<void> {
  const budgetMs = removed.graceMs + REMOVAL_MARGIN_MS;
  const deadline = clock.now() + budgetMs;
  let last = removed;
  for (;;) {
    try {
      last = await get(removed.name);
    } catch (err) {
      if (isNotFound(err)) return;
      throw err;
    }
    if (clock.now() >= deadline) {
      const stopping = last.replicaList.map((r) => String(r.index));
      throw new RemovalTimeoutError(
        `service ${last.name} is still being removed after ${Math.round(budgetMs / 1000)}s` +
          (stopping.length ? ` (replica ${stopping.join(', ')} not stopped yet)` : '') +
          `; its nodes may be offline. See \`hivemind service get ${last.name}\``,
      );
    }
    await clock.sleep(Math.min(REMOVAL_POLL_MS, Math.max(0, deadline - clock.now())), signal);
  }
}
