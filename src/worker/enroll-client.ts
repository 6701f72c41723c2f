// First contact with a master in tunnel mode: check that the master's TLS certificate is the one
// the join token pins (an impostor is refused before anything is sent), then call Enroll over
// that verified TLS channel with the token and this node's WireGuard PUBLIC key.
import { connect } from 'node:tls';
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { portOf, splitHostPort, stripBrackets } from '../common/address.js';
import { HivemindError } from '../common/errors.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { EnrollServiceClient, type EnrollRequest, type EnrollResponse } from '../protocol/gen/hivemind/v1/enroll.js';
import type { Logger } from '../common/logger.js';
import { certFingerprint, joinEndpoints, type JoinToken } from '../tunnel/join-token.js';

export class ImpostorMasterError extends HivemindError {
  constructor(endpoint: string, seen: string, pinned: string) {
    super('MASTER_IMPOSTOR', `the server at ${endpoint} presented a certificate with sha256 ${seen}, but the join token pins ${pinned}: refusing to enroll with it (wrong address, or someone in the middle)`);
  }
}

export class EnrollmentError extends HivemindError {
  constructor(message: string, readonly grpcCode?: number, options?: { cause?: unknown }) {
    super('ENROLLMENT_FAILED', message, options);
  }
}

export interface Enroller {
  enroll(token: JoinToken, req: EnrollRequest): Promise<EnrollResponse>;
}

/**
 * Whether a failed enrollment means "try the next master": it could not be reached, or it is a
 * standby (UNAVAILABLE "standby master: …"). An impostor or a refused token ends the enrollment.
 */
export function enrollMovesOn(err: unknown): boolean {
  if (!(err instanceof EnrollmentError)) return false;
  return err.grpcCode === undefined || err.grpcCode === status.UNAVAILABLE || err.grpcCode === status.DEADLINE_EXCEEDED;
}

/** Enrolls with the first of the token's masters that answers as active, in the token's order. */
export async function enrollWithAnyMaster(enroller: Enroller, token: JoinToken, req: EnrollRequest, log: Logger): Promise<EnrollResponse> {
  const endpoints = joinEndpoints(token);
  for (const [i, endpoint] of endpoints.entries()) {
    try {
      return await enroller.enroll({ ...token, endpoint }, req);
    } catch (err) {
      if (i === endpoints.length - 1 || !enrollMovesOn(err)) throw err;
      log.warn({ endpoint, err: (err as Error).message, next: endpoints[i + 1] }, 'enrollment: this master did not answer as active; trying the next');
    }
  }
  throw new Error('unreachable: a join token has at least one endpoint');
}

/** Connects once without trusting anything and returns the server's certificate if it is the pinned one. */
export function fetchPinnedCertificate(endpoint: string, fingerprint: string, timeoutMs = 10_000): Promise<string> {
  const host = stripBrackets(splitHostPort(endpoint).host);
  const port = portOf(endpoint);
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, rejectUnauthorized: false, ALPNProtocols: ['h2'], timeout: timeoutMs }, () => {
      const cert = socket.getPeerX509Certificate();
      socket.destroy();
      if (!cert) return reject(new EnrollmentError(`the server at ${endpoint} sent no certificate`));
      const pem = cert.toString();
      const seen = certFingerprint(pem);
      if (seen !== fingerprint) return reject(new ImpostorMasterError(endpoint, seen, fingerprint));
      resolve(pem);
    });
    socket.once('timeout', () => {
      socket.destroy();
      reject(new EnrollmentError(`the master's enrollment endpoint ${endpoint} did not answer within ${timeoutMs} ms; check the address and that TCP to it is open`));
    });
    socket.once('error', (err) => reject(new EnrollmentError(`cannot reach the master's enrollment endpoint ${endpoint}: ${err.message}`, undefined, { cause: err })));
  });
}

export const grpcEnroller: Enroller = {
  async enroll(token, req) {
    const pem = await fetchPinnedCertificate(token.endpoint, token.fingerprint);
    // The pinned certificate is the only root; the identity check is the fingerprint, not a name.
    const creds = credentials.createSsl(Buffer.from(pem), null, null, {
      checkServerIdentity: (_host, cert) => {
        const seen = cert.fingerprint256.replace(/:/g, '').toLowerCase();
        return seen === token.fingerprint ? undefined : new ImpostorMasterError(token.endpoint, seen, token.fingerprint);
      },
    });
    const client = new EnrollServiceClient(token.endpoint, creds);
    try {
      return await new Promise<EnrollResponse>((resolve, reject) => {
        client.enroll(req, bearerMetadata(token.secret), { deadline: Date.now() + 30_000 }, (err: ServiceError | null, res) =>
          err ? reject(new EnrollmentError(`enrollment refused by the master: ${describeGrpcError(err)}`, err.code, { cause: err })) : resolve(res),
        );
      });
    } finally {
      client.close();
    }
  },
};
