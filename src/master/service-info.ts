// Conversion of a service and its replica tasks into the ServiceInfo of the admin API, as a pure
// function: which replicas to show (every live task, and for a wanted index without one its
// latest ended task, so the user sees why it is missing), their health and traffic.
import type { ReplicaInfo, ServiceInfo } from '../protocol/gen/hivemind/v1/admin.js';
import { TaskState } from '../protocol/gen/hivemind/v1/common.js';
import type { TrafficView } from './gateway/gateway-directory.js';
import type { ServiceRow } from './service-store.js';
import { isTerminal, type TaskRow } from './store-rows.js';

/** The gateway URL of a service: `base` (no trailing slash needed) + /s/NAME/. */
export function serviceEndpoint(base: string, name: string): string {
  if (!base) return ''; // no gateway runs (--gateway-listen off)
  return `${base.replace(/\/+$/, '')}/s/${name}/`;
}

export function toServiceInfo(s: ServiceRow, tasks: readonly TaskRow[], gatewayUrl: string, traffic?: TrafficView): ServiceInfo {
  const live = tasks.filter((t) => !isTerminal(t.state));
  const shown = [...live];
  for (let index = 0; index < s.replicas && !s.removing; index++) {
    if (live.some((t) => t.spec.service!.replica === index)) continue;
    const ended = tasks.filter((t) => t.spec.service!.replica === index).sort((a, b) => b.createdAt - a.createdAt)[0];
    if (ended) shown.push(ended);
  }
  shown.sort((a, b) => a.spec.service!.replica - b.spec.service!.replica || a.createdAt - b.createdAt);
  const replicaList = shown.map((t): ReplicaInfo => ({
    index: t.spec.service!.replica,
    taskId: t.id,
    attempt: t.attempt,
    nodeId: t.nodeId ?? '',
    state: t.state,
    status: t.replicaStatus,
    traffic: traffic?.replica(t.id),
    queueReason: t.state === TaskState.TASK_STATE_QUEUED ? t.queueReason : '',
    stopping: t.cancelRequested && !isTerminal(t.state),
  }));
  // Per index: during a handover the surge may be healthy a moment before the old task is cancelled.
  const healthy = new Set(live.filter((t) => !t.cancelRequested && t.state === TaskState.TASK_STATE_RUNNING && t.replicaStatus?.healthy).map((t) => t.spec.service!.replica)).size;
  return {
    name: s.name,
    spec: s.spec,
    replicas: s.replicas,
    public: s.public,
    graceMs: s.graceMs,
    createdAtMs: s.createdAt,
    replicaList,
    endpoint: serviceEndpoint(gatewayUrl, s.name),
    traffic: traffic?.service(s.name),
    removing: s.removing,
    healthy,
  };
}
