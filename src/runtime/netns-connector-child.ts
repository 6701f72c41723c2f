// The connector's child side, run inside a replica container's network namespace (nsenter -n):
// for each request from the worker it connects to 127.0.0.1:<port> there and hands the connected
// socket back over the IPC channel, so the worker's bytes flow to the container with no relay.
// Started as a script from dist/, or as `hivemind __netns-connector` in the standalone executable.
import { connect, type Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { isStandalone } from '../common/embedded-assets.js';

/** A request from the worker. */
export interface ConnectRequest {
  id: number;
  port: number;
}

/** The answer: with the socket as the message's handle when `ok`. */
export type ConnectAnswer = { id: number; ok: true } | { id: number; ok: false; code: string; message: string } | { ready: true };

export const NO_CHANNEL_MESSAGE = 'the netns connector is started by the worker, with an IPC channel; it is not a command to run by hand';

/**
 * Serves requests until the IPC channel closes (the worker stopped or died), then exits. False
 * when there is no IPC channel (run by hand).
 */
export function serveConnector(): boolean {
  const send = process.send?.bind(process);
  if (!send) return false;
  process.on('disconnect', () => process.exit(0));
  process.on('message', (msg: unknown) => {
    const req = msg as Partial<ConnectRequest> | null;
    const id = req?.id;
    const port = req?.port;
    if (typeof id !== 'number' || !Number.isInteger(port) || (port as number) < 1 || (port as number) > 65535) return;
    const sock: Socket = connect({ host: '127.0.0.1', port: port as number });
    // Never read here, so no byte is lost (a server may speak first): paused before it connects,
    // Node does not start reading at connect; a handle sent while the channel still waits for the
    // worker's ack of an earlier one is queued, and without this would be read from meanwhile.
    sock.pause();
    sock.once('connect', () => {
      sock.removeAllListeners('error');
      send({ id, ok: true } satisfies ConnectAnswer, sock, { keepOpen: false }, (err) => {
        if (err) sock.destroy();
      });
    });
    sock.once('error', (err: NodeJS.ErrnoException) => {
      send({ id, ok: false, code: err.code ?? 'ERROR', message: err.message } satisfies ConnectAnswer);
      sock.destroy();
    });
  });
  send({ ready: true } satisfies ConnectAnswer);
  return true;
}

// Run as a script (dist/): serve. In the standalone executable the CLI's hidden command calls
// serveConnector(); import.meta is empty there, so it is not looked at.
if (!isStandalone() && process.argv[1] === fileURLToPath(import.meta.url) && !serveConnector()) {
  process.stderr.write(`hivemind: ${NO_CHANNEL_MESSAGE}\n`);
  process.exitCode = 2;
}
