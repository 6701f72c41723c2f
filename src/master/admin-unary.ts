// A unary handler of an admin-facing service: the admin token is checked before the request is
// looked at, and any error becomes the call's status (see unary-answer.ts: it runs at once).
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { answerUnary } from './unary-answer.js';
import type { MasterAuth } from './auth.js';

export function adminUnary<Req, Res>(auth: MasterAuth, fn: (req: Req) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => answerUnary(cb, () => {
    auth.checkAdmin(call.metadata);
    return fn(call.request);
  });
}
