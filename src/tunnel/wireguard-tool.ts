// The narrow interface the worker and the master use to manage their WireGuard interface; one
// implementation per platform (linux-wireguard.ts, windows-wireguard.ts).
import type { WgInterfaceSpec, WgInterfaceStatus, WgPeerChange } from './wg-spec.js';

export type WgImplementation = 'kernel' | 'userspace' | 'windows-service';

export interface WireGuardTool {
  /** Creates the interface, or reconfigures it when it exists, to match `spec`. Idempotent. */
  up(spec: WgInterfaceSpec): Promise<WgImplementation>;
  /** Replaces the peer set of a running interface (added, changed and removed peers). */
  syncPeers(spec: WgInterfaceSpec): Promise<void>;
  /**
   * Changes only the named peers of a running interface: `set` peers are added or replaced (their
   * allowed IPs, endpoint and keepalive), `remove` keys are dropped; every other peer is untouched.
   * Cheap at any peer count, unlike syncPeers, which rewrites the whole set.
   */
  updatePeers(name: string, change: WgPeerChange): Promise<void>;
  /** The live state, or undefined when the interface does not exist. */
  show(name: string): Promise<WgInterfaceStatus | undefined>;
  /** Removes the interface; a missing interface is success. */
  down(name: string): Promise<void>;
}
