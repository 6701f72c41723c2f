// Every gRPC call of a master server, counted once where it ends: a server interceptor (given to
// each Server the master builds) sees the status each call ends with, unary and streaming alike,
// or the client's cancel. grpc-js runs interceptors only for registered methods, so the method
// label takes only the services' own names (no client can add series with made-up paths).
import { ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';
import type { Clock } from '../../common/clock.js';

export interface GrpcCallSink {
  grpcCall(service: string, method: string, code: string, seconds: number): void;
}

/** "/hivemind.v1.AdminService/SubmitTask" → the service and the method. */
export function splitMethodPath(path: string): { service: string; method: string } {
  const m = /^\/([^/]+)\/([^/]+)$/.exec(path);
  return m ? { service: m[1]!, method: m[2]! } : { service: 'unknown', method: path };
}

/** A status code as its name ("OK", "UNAUTHENTICATED"), as gRPC dashboards show it. */
export function codeName(code: number): string {
  return (Status[code] as string | undefined) ?? String(code);
}

export function grpcCallInterceptor(sink: GrpcCallSink, clock: Clock): ServerInterceptor {
  return (descriptor, call) => {
    const { service, method } = splitMethodPath(descriptor.path);
    const start = clock.now();
    let ended = false;
    const end = (code: number) => {
      if (ended) return;
      ended = true;
      sink.grpcCall(service, method, codeName(code), Math.max(0, clock.now() - start) / 1000);
    };
    return new ServerInterceptingCall(call, {
      start: (next) => next({ onCancel: () => end(Status.CANCELLED) }),
      sendStatus: (s, next) => {
        end(s.code);
        next(s);
      },
    });
  };
}
