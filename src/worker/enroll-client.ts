// First contact with a master in tunnel mode: check that the master's TLS certificate is the one
// the join token pins (an impostor is refused before anything is sent), then call Enroll over
// that verified TLS channel with the token and this node's WireGuard PUBLIC key.
import { connect } from 'node:tls';
import { credentials, type ServiceError } from '@grpc/grpc-js';
import { portOf, splitHostPort, stripBrackets } from '../common/address.js';
import { HivemindError } from '../common/errors.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { EnrollServiceClient, type EnrollRequest, type EnrollResponse } from '../protocol/gen/hivemind/v1/enroll.js';
import { certFingerprint, type JoinToken } from '../tunnel/join-token.js';

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
