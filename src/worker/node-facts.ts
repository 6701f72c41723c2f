// What a node tells the master about itself, at enrollment (tunnel mode) and at every registration:
// the probed host facts plus its own settings. Built only here, so the two always agree.
import type { Isolation, LimitKind, NodeFacts } from '../protocol/gen/hivemind/v1/common.js';
import type { HostFacts } from './resources/resource-probe.js';

export interface NodeSettings {
  labels?: Record<string, string> | undefined;
  workerVersion: string;
  maxTasks: number;
  allowsEgress?: boolean | undefined;
  /** The isolations it runs tasks under (decided at start: --isolation and the gVisor probe). Default: none said (runc only). */
  isolations?: readonly Isolation[];
  /** The container engine it runs tasks on (runtime/engine-identity.ts). Default: none said (docker). */
  engine?: string;
  /** The limits its engine cannot enforce (runtime/engine-limits.ts). Default: none (all hold). */
  unenforcedLimits?: readonly LimitKind[];
}

export function nodeFacts(host: HostFacts, node: NodeSettings): NodeFacts {
  return { ...host, labels: new Map(Object.entries(node.labels ?? {})), workerVersion: node.workerVersion, allowsEgress: node.allowsEgress ?? false, maxTasks: node.maxTasks, isolations: [...(node.isolations ?? [])], engine: node.engine ?? '', unenforcedLimits: [...(node.unenforcedLimits ?? [])] };
}
