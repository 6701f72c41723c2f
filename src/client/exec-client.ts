// The client side of an exec session (AdminService.Exec): sends the start, then stdin (in pieces
// within the master's bound) and window sizes, writes the command's output to the given streams
// with backpressure both ways, and resolves with the command's exit.
import type { ClientDuplexStream } from '@grpc/grpc-js';
import type { Readable, Writable } from 'node:stream';
import { AdminServiceChunkClient } from '../protocol/chunk-codec.js';
import { EXEC_BOUNDS } from '../protocol/exec-rules.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';
import type { ExecInput, ExecOutput, ExecStart, ExecStarted, TerminalSize } from '../protocol/gen/hivemind/v1/common.js';
import { MasterCallError } from './admin-client.js';
import { HivemindError } from '../common/errors.js';

/** The bound on one stdin message, which both ends check (protocol/exec-rules.ts). */
export const EXEC_STDIN_PIECE = EXEC_BOUNDS.maxStdinBytes;

export interface ExecIo {
  /** Sent as the command's stdin when the start asks for it; its end closes the command's stdin. */
  stdin?: Readable;
  stdout: Writable;
  stderr: Writable;
  /** Called once the session runs with a function that sends a new window size (tty only). */
  onStarted?: (started: ExecStarted, resize: (size: TerminalSize) => void) => void;
}

export interface ExecResult {
  code: number;
  /** Why the command could not run, or why the session was cut; empty after a normal exit. */
  error: string;
}

/** Writes to a duplex call, waiting for 'drain' when its buffer is full. */
async function send(call: ClientDuplexStream<ExecInput, ExecOutput>, m: ExecInput): Promise<void> {
  if (call.write(m)) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      call.off('drain', done);
      call.off('close', done);
      resolve();
    };
    call.on('drain', done);
    call.on('close', done);
  });
}

export async function runExec(address: string, adminToken: string, start: ExecStart, io: ExecIo, signal?: AbortSignal, transport: Transport = insecureTransport): Promise<ExecResult> {
  const client = new AdminServiceChunkClient(address, transport.clientCredentials(), channelOptions);
  const call = client.exec(bearerMetadata(adminToken));
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  let stdinDone = false;
  const pumpStdin = async (stdin: Readable) => {
    try {
      for await (const chunk of stdin) {
        const buf = typeof chunk === 'string' ? Buffer.from(chunk) : (chunk as Buffer);
        for (let at = 0; at < buf.length; at += EXEC_STDIN_PIECE) await send(call, { input: { $case: 'stdin', value: buf.subarray(at, at + EXEC_STDIN_PIECE) } });
        if (stdinDone) return;
      }
      if (!stdinDone) await send(call, { input: { $case: 'stdinEof', value: true } });
    } catch {
      // The session ended while stdin was still read; the exit (or the call's error) says why.
    }
  };
  try {
    return await new Promise<ExecResult>((resolve, reject) => {
      let result: ExecResult | undefined;
      call.on('data', (m: ExecOutput) => {
        const out = m.output;
        switch (out?.$case) {
          case 'started':
            io.onStarted?.(out.value, (size) => void send(call, { input: { $case: 'resize', value: size } }));
            if (start.stdin && io.stdin) void pumpStdin(io.stdin);
            return;
          case 'stdout':
          case 'stderr': {
            const sink = out.$case === 'stdout' ? io.stdout : io.stderr;
            if (!sink.write(out.value)) {
              call.pause();
              sink.once('drain', () => call.resume());
            }
            return;
          }
          case 'exit':
            result = { code: out.value.code, error: out.value.error };
            return;
        }
      });
      call.on('error', (err) => reject(new MasterCallError('exec', err)));
      call.on('end', () => (result ? resolve(result) : reject(new HivemindError('EXEC_CUT', 'exec: the master ended the session without an exit code'))));
      call.write({ input: { $case: 'start', value: start } });
    });
  } finally {
    stdinDone = true;
    signal?.removeEventListener('abort', onAbort);
    call.end();
    io.stdin?.pause();
    client.close();
  }
}
