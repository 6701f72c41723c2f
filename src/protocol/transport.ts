// The transport between worker/CLI and master, kept swappable: loopback without TLS today;
// the WireGuard tunnel and TLS bootstrap plug in here without touching the services.
import { ChannelCredentials, ServerCredentials, type ChannelOptions } from '@grpc/grpc-js';
import { FLOW_CONTROL_WINDOW } from './flow-control.js';

export interface Transport {
  readonly name: string;
  clientCredentials(): ChannelCredentials;
  serverCredentials(): ServerCredentials;
}

/** Plaintext gRPC: only for loopback or inside an already-encrypted tunnel. */
export const insecureTransport: Transport = {
  name: 'insecure',
  clientCredentials: () => ChannelCredentials.createInsecure(),
  serverCredentials: () => ServerCredentials.createInsecure(),
};

/** Chunk size for every streamed archive (input and result); far below the 4 MiB message cap. */
export const CHUNK_SIZE = 256 * 1024;

export const channelOptions: ChannelOptions = {
  'grpc.keepalive_time_ms': 20_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 4 * 1024 * 1024,
  // Downloads (inputs, results) move at window/RTT: see flow-control.ts.
  'grpc-node.flow_control_window': FLOW_CONTROL_WINDOW,
};
