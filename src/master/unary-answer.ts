// How every unary handler of the master answers: it runs at once, in the turn of the event loop
// that delivered its request, and its result or error becomes the call's answer. Deferring the
// handler to a microtask (as `Promise.resolve().then(handler)` does) moved its work past the RPC
// link's 10 ms slices: a slice that delivered 500 task updates was followed by 500 handlers in
// one unbroken run of microtasks, 100-250 ms of the loop at 10,000 nodes. Run here, a handler's
// synchronous part (its SQLite transaction) counts in the slice that delivered it.
import type { sendUnaryData } from '@grpc/grpc-js';
import { toServiceError } from '../protocol/grpc-errors.js';

export function answerUnary<Res>(cb: sendUnaryData<Res>, handler: () => Promise<Res> | Res): void {
  let out: Promise<Res> | Res;
  try {
    out = handler();
  } catch (err) {
    cb(toServiceError(err));
    return;
  }
  if (out instanceof Promise) out.then((res) => cb(null, res), (err: unknown) => cb(toServiceError(err)));
  else cb(null, out);
}
