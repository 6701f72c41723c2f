// Run inside a test namespace: `node call-node-service.js ADDRESS CREDENTIAL` calls
// NodeService.Register with the given credential and prints "OK" or the gRPC status name and
// details, so a test can prove where a credential is (not) accepted from.
import { credentials, status, type ServiceError } from '@grpc/grpc-js';
import { bearerMetadata } from '../../src/protocol/auth-metadata.js';
import { NodeServiceClient } from '../../src/protocol/gen/hivemind/v1/node.js';

const [address, credential] = process.argv.slice(2);
const client = new NodeServiceClient(address!, credentials.createInsecure());
client.register({ name: 'replay', facts: undefined }, bearerMetadata(credential!), { deadline: Date.now() + 5000 }, (err: ServiceError | null) => {
  process.stdout.write(err ? `${status[err.code]} ${err.details}\n` : 'OK\n');
  client.close();
  process.exit(0);
});
