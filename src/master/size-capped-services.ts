// Server-side service definitions whose node-sent messages are size-checked BEFORE decoding.
// grpc-js admits any message up to the server's 4 MiB receive limit (shared with the admin
// service's uploads), and decoding one made of 250,000 small entries blocks the event loop for
// ~90 ms by itself. Over its cap a message is not decoded: the handler gets an empty message
// marked oversize and answers INVALID_ARGUMENT naming the size and the cap (a throw in the
// deserializer would surface as an opaque INTERNAL "Error deserializing request").
import { NodeFacts } from '../protocol/gen/hivemind/v1/common.js';
import { ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import { EnrollRequest, EnrollServiceService } from '../protocol/gen/hivemind/v1/enroll.js';
import { RegisterRequest, SubscribeRequest, TaskUpdate } from '../protocol/gen/hivemind/v1/node.js';
import { NodeServiceDefinition } from '../protocol/chunk-codec.js';
import { MAX_REGISTER_BYTES, MAX_REPORT_BYTES, MAX_SUBSCRIBE_BYTES, MAX_UPDATE_BYTES } from '../protocol/node-limits.js';
import { InvalidArgumentError } from './master-errors.js';

const OVERSIZE = Symbol('hivemind.oversize');

interface Oversize {
  what: string;
  bytes: number;
  limit: number;
}

function capped<T extends object>(what: string, limit: number, decode: (b: Buffer) => T, empty: () => T): (b: Buffer) => T {
  return (buf) => {
    if (buf.length <= limit) return decode(buf);
    const mark: Oversize = { what, bytes: buf.length, limit };
    return Object.assign(empty(), { [OVERSIZE]: mark });
  };
}

/** Throws INVALID_ARGUMENT when `message` was refused undecoded for its size. */
export function assertWithinSize(message: object): void {
  const o = (message as { [OVERSIZE]?: Oversize })[OVERSIZE];
  if (o) throw new InvalidArgumentError(`${o.what}: the message is ${o.bytes} bytes, over the limit of ${o.limit} bytes; it was not read`);
}

/** NodeService for the master's server: Register, Report, Subscribe and UpdateTask messages size-capped. */
export const SizeCappedNodeService = {
  ...NodeServiceDefinition,
  register: {
    ...NodeServiceDefinition.register,
    requestDeserialize: capped('Register', MAX_REGISTER_BYTES, (b) => RegisterRequest.decode(b), () => RegisterRequest.create({ facts: NodeFacts.create() })),
  },
  report: {
    ...NodeServiceDefinition.report,
    requestDeserialize: capped('Report', MAX_REPORT_BYTES, (b) => ResourceReport.decode(b), () => ResourceReport.create()),
  },
  subscribe: {
    ...NodeServiceDefinition.subscribe,
    requestDeserialize: capped('Subscribe', MAX_SUBSCRIBE_BYTES, (b) => SubscribeRequest.decode(b), () => SubscribeRequest.create()),
  },
  updateTask: {
    ...NodeServiceDefinition.updateTask,
    requestDeserialize: capped('UpdateTask', MAX_UPDATE_BYTES, (b) => TaskUpdate.decode(b), () => TaskUpdate.create()),
  },
} satisfies typeof NodeServiceDefinition;

/** EnrollService for the master's public address: the request (name, facts, key) size-capped. */
export const SizeCappedEnrollService = {
  ...EnrollServiceService,
  enroll: {
    ...EnrollServiceService.enroll,
    requestDeserialize: capped('Enroll', MAX_REGISTER_BYTES, (b) => EnrollRequest.decode(b), () => EnrollRequest.create({ facts: NodeFacts.create() })),
  },
} satisfies typeof EnrollServiceService;
