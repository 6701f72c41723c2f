// Tunnel failures a person can act on: each message says what to install, what permission is
// missing, or what to check.
import { HivemindError } from '../common/errors.js';

export class TunnelError extends HivemindError {
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

export class WireGuardMissingError extends TunnelError {
  constructor(what: string, fix: string) {
    super('WG_MISSING', `${what} not found: ${fix}`);
  }
}

export class TunnelPermissionError extends TunnelError {
  constructor(detail: string) {
    super('WG_PERMISSION', `not allowed to manage the WireGuard interface (${detail}): run as root / Administrator, or give the process CAP_NET_ADMIN`);
  }
}

export class TunnelPortInUseError extends TunnelError {
  constructor(port: number, detail: string) {
    super('WG_PORT_IN_USE', `UDP port ${port} is already in use (${detail}): stop what uses it or pick another port`);
  }
}

export class HandshakeTimeoutError extends TunnelError {
  constructor(name: string, endpoint: string, waitedMs: number) {
    super(
      'WG_NO_HANDSHAKE',
      `tunnel ${name}: no handshake with the master at ${endpoint} after ${Math.round(waitedMs / 1000)} s; check that UDP to that endpoint is not blocked and that the master is running`,
    );
  }
}

export class TunnelCommandError extends TunnelError {
  constructor(command: string, detail: string, options?: { cause?: unknown }) {
    super('WG_COMMAND_FAILED', `${command} failed: ${detail}`, options);
  }
}

/** A MeshPeers message from the master outside the node's bounds; nothing of it was applied. */
export class MeshPeersRefusedError extends TunnelError {
  constructor(detail: string) {
    super('MESH_PEERS_REFUSED', `mesh peers from the master refused (nothing applied): ${detail}`);
  }
}
