// The node's status as the page gets it: a pure function of what the node, its store, its tunnel
// and Docker say right now, so the problems it lists can be tested without a server.
import { Isolation, type TunnelStatus } from '../protocol/gen/hivemind/v1/common.js';
import { isolationName } from '../protocol/isolation-rules.js';
import { engineShown, limitName } from '../protocol/limit-rules.js';
import type { MonitoredNode, MonitorStore } from './monitored-node.js';
import type { RunningTaskView, StatusView } from './monitor-types.js';
import { contributionView, tunnelView } from './monitor-view.js';

export interface StatusInputs {
  node: MonitoredNode;
  store: MonitorStore;
  now: number;
  tunnel: TunnelStatus | undefined;
  /** Docker as the latest report saw it; undefined before the first report. */
  docker: { ok: boolean; message: string } | undefined;
  running: RunningTaskView[];
}

export function buildStatus({ node, store, now, tunnel: t, docker: reported, running }: StatusInputs): StatusView {
  const tunnel = t ? tunnelView(t, now) : null;
  const facts = node.hostFacts;
  const docker = reported ?? { ok: facts.dockerVersion !== '', message: facts.dockerVersion ? '' : 'Docker status not known yet' };
  const problems: string[] = [];
  const masterAddress = node.masterAddress ?? node.options.masterAddress;
  if (!docker.ok) problems.push(docker.message || 'Docker daemon not reachable; run `hivemind doctor`');
  if (node.state === 'reconnecting') problems.push(`master ${masterAddress} not reachable: ${node.stateReason ?? 'reconnecting'}`);
  if (tunnel && tunnel.state !== 'up') {
    const age = tunnel.handshakeAgeMs === null ? 'no handshake yet' : `last handshake ${Math.round(tunnel.handshakeAgeMs / 1000)} s ago`;
    problems.push(`WireGuard tunnel ${tunnel.interface} is ${tunnel.state} (${age})`);
  }
  const free = node.freeCapacity();
  const last = store.lastContribution();
  return {
    node: {
      id: node.nodeId ?? null,
      name: node.options.name ?? facts.hostname,
      state: node.state,
      accepting: node.accepting,
      paused: node.isPaused,
      masterAddress,
      version: node.options.workerVersion,
      egress: node.options.allowsEgress === true,
      startedAtMs: node.startedAt,
      uptimeMs: Math.max(0, now - node.startedAt),
      problems,
      isolations: (node.options.isolations?.length ? node.options.isolations : [Isolation.ISOLATION_RUNC]).map(isolationName),
      engine: engineShown(node.options.engine),
      unenforcedLimits: (node.options.unenforcedLimits ?? []).map(limitName),
    },
    docker: { ok: docker.ok, version: facts.dockerVersion || null, message: docker.ok ? null : docker.message || null },
    tunnel,
    budget: { maxTasks: node.budget.maxTasks, cpus: node.budget.cpus, memoryBytes: node.budget.memoryBytes, gpus: node.budget.gpuIndexes.length },
    free: { cpus: free.cpus, memoryBytes: free.memoryBytes, taskSlots: free.taskSlots },
    contribution: { last: last ? contributionView(last) : null, total: store.contributionTotal() },
    running,
  };
}
