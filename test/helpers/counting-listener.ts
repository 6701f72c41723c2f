// A TCP listener on the host's loopback that counts the connections it accepts: what a task that
// must have no network would reach if it could (the runner tests under runc and gVisor).
import { createServer, type Server } from 'node:net';

export interface CountingListener {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): void;
}

export async function countingListener(): Promise<CountingListener> {
  let connections = 0;
  const server: Server = createServer((s) => {
    connections++;
    s.destroy();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as { port: number }).port, connections: () => connections, close: () => server.close() };
}
