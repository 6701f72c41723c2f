// The enrollment service, the only thing on the master's public address (TLS): spends one use of
// a token, allocates the node's stable tunnel address, adds its WireGuard peer and answers with
// the node identity and tunnel config. A refused token allocates nothing.
import { randomBytes } from 'node:crypto';
import type { ServerUnaryCall, sendUnaryData } from '@grpc/grpc-js';
import { AuthError } from '../common/errors.js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { readBearer } from '../protocol/auth-metadata.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import { NodeFacts } from '../protocol/gen/hivemind/v1/common.js';
import type { EnrollRequest, EnrollResponse, EnrollServiceServer } from '../protocol/gen/hivemind/v1/enroll.js';
import { isWgKey } from '../tunnel/wg-keys.js';
import type { MasterAuth } from './auth.js';
import { InvalidArgumentError, PreconditionError } from './master-errors.js';
import type { MasterStore } from './master-store.js';
import type { TunnelHub } from './tunnel-hub.js';
import { validateRegistration } from './node-input-validation.js';
import { assertWithinSize } from './size-capped-services.js';

export interface EnrollServiceDeps {
  store: MasterStore;
  auth: MasterAuth;
  hub: TunnelHub;
  clock: Clock;
  log: Logger;
  /** Called after a node was added (mesh updates). */
  onEnrolled?: (nodeId: string) => void;
}

export class EnrollService {
  constructor(private readonly d: EnrollServiceDeps) {}

  handlers(): EnrollServiceServer {
    return {
      enroll: (call, cb) => void this.enroll(call, cb),
    };
  }

  private async enroll(call: ServerUnaryCall<EnrollRequest, EnrollResponse>, cb: sendUnaryData<EnrollResponse>): Promise<void> {
    try {
      const { store, auth, hub, clock } = this.d;
      const token = readBearer(call.metadata);
      if (!token) throw new AuthError('missing enrollment token: send "authorization: Bearer <hm1.…>"');
      const req = call.request;
      if (!isWgKey(req.wgPublicKey)) throw new InvalidArgumentError('wg_public_key: not a WireGuard public key (44 base64 characters)');
      const existing = store.findNodeByWgKey(req.wgPublicKey);
      if (existing) throw new PreconditionError(`this WireGuard key is already enrolled as node ${existing.id}; a node enrolls once and then reuses its identity`);
      assertWithinSize(req);
      const facts = req.facts ?? NodeFacts.create();
      validateRegistration(req.name, facts);
      const nodeId = randomBytes(8).toString('hex');
      const fresh = auth.newNodeCredential();
      const name = req.name.trim() || facts.hostname || nodeId;
      let tunnelIp = '';
      // Allocation and insertion run inside the token's transaction: nothing is allocated unless
      // the token is good, and two enrollments cannot take the same address.
      try {
        auth.enroll(token, () => {
          tunnelIp = hub.allocate();
          store.insertNode({ id: nodeId, name, facts, credentialHash: fresh.hash, at: clock.now(), wgPublicKey: req.wgPublicKey, tunnelIp });
        });
      } catch (err) {
        // The transaction rolled back: the address the hub handed out is free again.
        if (tunnelIp) hub.release(tunnelIp);
        throw err;
      }
      await hub.addPeer({ nodeId, publicKey: req.wgPublicKey, tunnelIp });
      this.d.log.info({ nodeId, name, tunnelIp }, 'node enrolled');
      this.d.onEnrolled?.(nodeId);
      cb(null, { nodeId, nodeCredential: fresh.credential, tunnel: hub.tunnelConfigFor(tunnelIp) });
    } catch (err) {
      if (!(err instanceof AuthError)) this.d.log.warn({ err: (err as Error).message }, 'enrollment failed');
      cb(toServiceError(err));
    }
  }
}
