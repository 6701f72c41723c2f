// The messages of a server-streaming gRPC call as an async iterable that never leaves the call
// running: an abort, an error or a consumer that stops early cancels it.
import type { ClientReadableStream } from '@grpc/grpc-js';

export async function* callMessages<T>(call: ClientReadableStream<T>, signal?: AbortSignal): AsyncGenerator<T> {
  const onAbort = () => call.cancel();
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    for await (const m of call) yield m as T;
  } finally {
    signal?.removeEventListener('abort', onAbort);
    call.cancel();
  }
}
