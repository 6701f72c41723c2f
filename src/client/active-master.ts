// Which of several masters a CLI command talks to. Masters that share one store run one active
// and the others standby; a standby answers every call UNAVAILABLE "standby master: …", a killed
// master does not answer at all. A command asks each address in order with one cheap call and
// uses the first that answers as active. With one address nothing is asked: the CLI's fast path
// stays as it was (one connection, no extra call, no extra module).
import { Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { HivemindError } from '../common/errors.js';
import { bearerMetadata } from '../protocol/auth-metadata.js';
import { AdminServiceChunkClient } from '../protocol/chunk-codec.js';
import { describeGrpcError } from '../protocol/grpc-errors.js';
import { channelOptions, insecureTransport, type Transport } from '../protocol/transport.js';

/** How long one address may take to answer the probe: a blackholed host must not hold the command. */
export const PROBE_TIMEOUT_MS = 5_000;

/** None of the masters answered as active. */
export class NoActiveMasterError extends HivemindError {
  constructor(tried: readonly { address: string; why: string }[]) {
    super(
      'NO_ACTIVE_MASTER',
      `no active master among ${tried.length}: ${tried.map((t) => `${t.address}: ${t.why}`).join('; ')} ` +
        '(start a master, or check --master / HIVEMIND_MASTER)',
    );
  }
}

/**
 * Asks one master one cheap question. Resolves when it answered at all (even with an error that is
 * not about being unavailable: the command's own call will get and report that error); rejects
 * with the call's error otherwise.
 */
export type MasterProbe = (address: string) => Promise<void>;

/**
 * True for the answers that mean "not this one, try the next": a standby's UNAVAILABLE, a refused
 * or dropped connection (UNAVAILABLE too), no answer within the probe's deadline.
 */
export function movesOn(err: unknown): boolean {
  const code = (err as Partial<ServiceError> | null)?.code;
  return code === status.UNAVAILABLE || code === status.DEADLINE_EXCEEDED;
}

/** The first of `masters` that answers as active; the only one when there is one (not asked). */
export async function pickActiveMaster(masters: readonly string[], probe: MasterProbe): Promise<string> {
  if (masters.length === 1) return masters[0]!;
  const tried: { address: string; why: string }[] = [];
  for (const address of masters) {
    try {
      await probe(address);
      return address;
    } catch (err) {
      if (!movesOn(err)) return address;
      tried.push({ address, why: describeGrpcError(err) });
    }
  }
  throw new NoActiveMasterError(tried);
}

/** The production probe: ListServices with a page of one, the cheapest call every master serves. */
export function grpcMasterProbe(adminToken: string, transport: Transport = insecureTransport, timeoutMs = PROBE_TIMEOUT_MS): MasterProbe {
  return (address) =>
    new Promise<void>((resolve, reject) => {
      const client = new AdminServiceChunkClient(address, transport.clientCredentials(), channelOptions);
      const md: Metadata = bearerMetadata(adminToken);
      client.listServices({ limit: 1, pageToken: '' }, md, { deadline: new Date(Date.now() + timeoutMs) }, (err) => {
        client.close();
        if (err) reject(err);
        else resolve();
      });
    });
}
