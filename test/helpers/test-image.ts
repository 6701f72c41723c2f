// The image integration and e2e tests run: the offline busybox dev image, built on first use.
import { DockerEngine } from '../../src/runtime/docker-engine.js';
import { ensureDevImage } from '../../src/runtime/dev-image.js';
import { silentLogger } from '../../src/common/logger.js';

let pending: Promise<string> | undefined;

export function ensureTestImage(): Promise<string> {
  pending ??= ensureDevImage(DockerEngine.create(), silentLogger()).catch((err: unknown) => {
    pending = undefined;
    throw err;
  });
  return pending;
}
