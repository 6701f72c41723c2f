// Binding a Node HTTP server: the port it got (0 asks for a free one), or the listen error, with the
// server's one-shot error listener removed either way so a later error is the owner's to handle.
import type { Server } from 'node:http';

export function listenHttp(server: Server, host: string, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      const a = server.address();
      resolve(typeof a === 'object' && a ? a.port : port);
    });
  });
}
