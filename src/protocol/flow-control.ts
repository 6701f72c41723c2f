// HTTP/2 flow-control windows sized for bulk transfers. With the 64 KiB default, one stream moves
// at most 64 KiB per round trip: through a WireGuard tunnel (~1 ms RTT under load) that capped
// result uploads at a third of what TCP carries. Clients set their receive window through the
// 'grpc-node.flow_control_window' channel option; grpc-js servers have no such option, so the
// server's sessions are widened when they open.
import type { Http2Server, Http2Session } from 'node:http2';
import type { Server } from '@grpc/grpc-js';

/** Per-stream and per-connection receive window. */
export const FLOW_CONTROL_WINDOW = 4 * 1024 * 1024;

function widen(session: Http2Session): void {
  try {
    session.setLocalWindowSize(FLOW_CONTROL_WINDOW);
    session.settings({ initialWindowSize: FLOW_CONTROL_WINDOW });
  } catch {
    // a session closing as it opens: nothing to widen
  }
}

/**
 * Call after bindAsync. Returns false when this grpc-js version does not expose its HTTP/2
 * servers (transfers then work at the default window).
 */
export function widenServerWindows(server: Server): boolean {
  const servers = (server as unknown as { http2Servers?: Map<Http2Server, unknown> }).http2Servers;
  if (!(servers instanceof Map)) return false;
  for (const h2 of servers.keys()) {
    if ((h2 as { __hivemindWidened?: boolean }).__hivemindWidened) continue;
    (h2 as { __hivemindWidened?: boolean }).__hivemindWidened = true;
    h2.on('session', widen);
  }
  return true;
}
