// Bearer credentials in gRPC metadata: node credentials, enrollment tokens, admin tokens.
import { Metadata } from '@grpc/grpc-js';

export function bearerMetadata(secret: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${secret}`);
  return md;
}

/** The bearer secret of a call, or undefined when absent or malformed. */
export function readBearer(md: Metadata): string | undefined {
  const v = md.get('authorization')[0];
  if (typeof v !== 'string') return undefined;
  const m = /^Bearer (\S+)$/.exec(v);
  return m?.[1];
}
