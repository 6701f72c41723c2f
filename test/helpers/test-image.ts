// The image integration and e2e tests run: the offline busybox dev image, built on first use in
// each engine asked for (Docker by default; a Podman socket imports its own copy the same way).
import { DockerEngine } from '../../src/runtime/docker-engine.js';
import { ensureDevImage } from '../../src/runtime/dev-image.js';
import { silentLogger } from '../../src/common/logger.js';

const pending = new Map<string, Promise<string>>();

/** `socketPath` picks the engine; without it, Docker (DOCKER_HOST or its default socket). */
export function ensureTestImage(socketPath?: string): Promise<string> {
  const key = socketPath ?? '';
  let p = pending.get(key);
  if (!p) {
    const engine = socketPath ? DockerEngine.create({ socket: { kind: 'unix', path: socketPath } }) : DockerEngine.create();
    p = ensureDevImage(engine, silentLogger()).catch((err: unknown) => {
      pending.delete(key);
      throw err;
    });
    pending.set(key, p);
  }
  return p;
}
