// A unary handler of an admin-facing service: the admin token is checked before the request is
// looked at, and any error becomes the call's status.
import type { sendUnaryData, ServerUnaryCall } from '@grpc/grpc-js';
import { toServiceError } from '../protocol/grpc-errors.js';
import type { MasterAuth } from './auth.js';

export function adminUnary<Req, Res>(auth: MasterAuth, fn: (req: Req) => Promise<Res> | Res) {
  return (call: ServerUnaryCall<Req, Res>, cb: sendUnaryData<Res>): void => {
    Promise.resolve()
      .then(() => {
        auth.checkAdmin(call.metadata);
        return fn(call.request);
      })
      .then((res) => cb(null, res), (err: unknown) => cb(toServiceError(err)));
  };
}
