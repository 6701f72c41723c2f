// Dials a node's gateway pipe for one replica connection: TCP connect, the hello line, the node's
// answer line (bounded, within a timeout). On OK the socket carries the replica's bytes from here
// on, as if it were a connection to the replica's port.
import { connect, type Socket } from 'node:net';
import { HivemindError } from '../../common/errors.js';
import { formatPipeHello, parsePipeAnswer, PIPE_MAX_LINE_BYTES } from '../../protocol/gateway-pipe.js';
import type { NodePipeAddress } from './gateway-directory.js';

/** The pipe could not carry the connection: refused, unreachable, timed out, or the node said ERR. */
export class PipeDialError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('GATEWAY_PIPE', message, options);
  }
}

export interface PipeDialOptions {
  /** Connect and answer together must be done within this. */
  timeoutMs: number;
  /** The client went away: give up, destroying the socket. */
  signal?: AbortSignal;
}

export function dialPipe(pipe: NodePipeAddress, replica: { taskId: string; attempt: number }, opts: PipeDialOptions): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    const where = `${pipe.host}:${pipe.port}`;
    const socket = connect({ host: pipe.host, port: pipe.port });
    socket.setNoDelay(true);
    let buffered = Buffer.alloc(0);
    let settled = false;
    const fail = (message: string, cause?: unknown) => {
      if (settled) return;
      settled = true;
      cleanup();
      socket.destroy();
      reject(new PipeDialError(message, cause === undefined ? undefined : { cause }));
    };
    const onAbort = () => fail('the client went away while the gateway pipe was being dialed');
    const timer = setTimeout(() => fail(`the node's gateway pipe at ${where} did not answer within ${opts.timeoutMs} ms`), opts.timeoutMs);
    const onError = (err: NodeJS.ErrnoException) => fail(`the node's gateway pipe at ${where} cannot be reached: ${err.code ?? err.message}`, err);
    const onEnd = () => fail(`the node's gateway pipe at ${where} closed before answering`);
    const onReadable = () => {
      let chunk: Buffer | null;
      while (!settled && (chunk = socket.read() as Buffer | null) !== null) {
        buffered = Buffer.concat([buffered, chunk]);
        const nl = buffered.indexOf(0x0a);
        if (nl === -1) {
          if (buffered.length > PIPE_MAX_LINE_BYTES) fail(`the node's gateway pipe at ${where} sent no answer line within ${PIPE_MAX_LINE_BYTES} bytes`);
          continue;
        }
        if (nl > PIPE_MAX_LINE_BYTES) return fail(`the node's gateway pipe at ${where} sent an answer line over ${PIPE_MAX_LINE_BYTES} bytes`);
        const answer = parsePipeAnswer(buffered.subarray(0, nl).toString('utf8'));
        if (!answer.ok) return fail(`the node refused the connection to replica ${replica.taskId}: ${answer.reason}`);
        const rest = buffered.subarray(nl + 1);
        settled = true;
        cleanup();
        // Bytes after the answer are the replica's already: they go back for the next reader.
        if (rest.length > 0) socket.unshift(rest);
        resolve(socket);
      }
    };
    function cleanup(): void {
      clearTimeout(timer);
      opts.signal?.removeEventListener('abort', onAbort);
      socket.off('readable', onReadable);
      socket.off('error', onError);
      socket.off('end', onEnd);
    }
    if (opts.signal?.aborted) return onAbort();
    opts.signal?.addEventListener('abort', onAbort, { once: true });
    socket.on('error', onError);
    socket.on('end', onEnd);
    // 'readable' (not 'data'): once it is removed the socket is neither flowing nor paused, so the
    // next reader (http.request's parser, or a pipe) starts it as if it had just connected.
    socket.on('readable', onReadable);
    socket.once('connect', () => socket.write(formatPipeHello({ key: pipe.key, taskId: replica.taskId, attempt: replica.attempt })));
  });
}
