// What the master's gateway needs to know, and nothing more: the services and their replicas (from
// the service manager), whether a client token admits a request, and where a node's gateway pipe is
// (from the registry). The gateway reads it per request; it owns no state of its own but traffic.
import type { TrafficStats } from '../../protocol/gen/hivemind/v1/admin.js';

export interface GatewayReplica {
  index: number;
  taskId: string;
  attempt: number;
  nodeId: string;
  /** RUNNING with its node's latest status healthy: in the rotation. */
  healthy: boolean;
}

export interface GatewayService {
  name: string;
  public: boolean;
  replicas: GatewayReplica[];
}

/** The node's gateway pipe as the master reaches it: the host is the master's own finding. */
export interface NodePipeAddress {
  host: string;
  port: number;
  key: string;
}

export interface GatewayDirectory {
  service(name: string): GatewayService | undefined;
  /**
   * Whether `token` (the Bearer secret as presented) is a live token of `service`: not revoked, not
   * expired. Records its use. Never throws for a malformed token: false.
   */
  tokenAllows(service: string, token: string): boolean;
  pipeOf(nodeId: string): NodePipeAddress | undefined;
}

/** The gateway's counters, read for ServiceInfo and /metrics. */
export interface TrafficView {
  /** Of one replica task (all its attempts), or undefined before its first request. */
  replica(taskId: string): TrafficStats | undefined;
  /** Of all the replicas of a service together. */
  service(name: string): TrafficStats | undefined;
}
