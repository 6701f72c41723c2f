// Builds the offline development/test image `hivemind/busybox:1` from the host's static busybox:
// a rootfs tar generated in Node, fed to the engine's image import. No registry is involved.
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';
import { HivemindError, errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { ContainerEngine } from './container-engine.js';
import { TASK_GID, TASK_UID } from './container-spec.js';

export const DEV_IMAGE_REPO = 'hivemind/busybox';
export const DEV_IMAGE_TAG = '1';
export const DEV_IMAGE = `${DEV_IMAGE_REPO}:${DEV_IMAGE_TAG}`;
export const DEFAULT_BUSYBOX_PATH = '/bin/busybox';

export class DevImageError extends HivemindError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('DEV_IMAGE_FAILED', message, options);
  }
}

export interface DevImageOptions {
  /** Static busybox binary to copy in. Default /bin/busybox (Debian package busybox-static). */
  busyboxPath?: string;
  /** Image reference to create. Default hivemind/busybox:1. */
  repo?: string;
  tag?: string;
  signal?: AbortSignal;
}

/** Returns the image reference, building the image first when the engine does not have it. */
export async function ensureDevImage(engine: ContainerEngine, logger: Logger, opts: DevImageOptions = {}): Promise<string> {
  const repo = opts.repo ?? DEV_IMAGE_REPO;
  const tag = opts.tag ?? DEV_IMAGE_TAG;
  const ref = `${repo}:${tag}`;
  if (await engine.imageExists(ref, opts.signal)) return ref;
  const busybox = opts.busyboxPath ?? DEFAULT_BUSYBOX_PATH;
  const applets = await listApplets(busybox);
  logger.info({ image: ref, busybox, applets: applets.length }, 'building the dev image from the host busybox');
  const rootfs = await buildRootfsTar(busybox, applets);
  await engine.importImage(rootfs, repo, tag, opts.signal);
  if (!(await engine.imageExists(ref, opts.signal))) throw new DevImageError(`image ${ref} is still missing after the import`);
  return ref;
}

async function listApplets(busybox: string): Promise<string[]> {
  let size: number;
  try {
    size = (await stat(busybox)).size;
  } catch (err) {
    throw new DevImageError(`${busybox} not found: install the busybox-static package (apt-get install busybox-static) to build the dev image`, { cause: err });
  }
  if (size === 0) throw new DevImageError(`${busybox} is empty`);
  try {
    const { stdout } = await promisify(execFile)(busybox, ['--list']);
    const applets = stdout.split('\n').map((s) => s.trim()).filter((s) => /^[a-z0-9_.[-]+$/i.test(s) && s !== 'busybox');
    if (applets.length === 0) throw new Error('no applets listed');
    return applets;
  } catch (err) {
    throw new DevImageError(`${busybox} --list failed (${errorMessage(err)}); it must be the static busybox of the busybox-static package`, { cause: err });
  }
}

/** The rootfs: busybox + applet symlinks, passwd/group with nobody, and task-writable dirs. */
async function buildRootfsTar(busybox: string, applets: string[]): Promise<Readable> {
  const size = (await stat(busybox)).size;
  const pack = tarStream.pack();
  const mtime = new Date(0);
  const add = (header: Partial<tarStream.Header> & { name: string }, body?: string) =>
    new Promise<void>((resolve, reject) => {
      const h = { mtime, uid: 0, gid: 0, ...header };
      if (body !== undefined) pack.entry(h, body, (err) => (err ? reject(err) : resolve()));
      else (pack.entry(h, (err) => (err ? reject(err) : resolve())) as unknown as { end(): void }).end();
    });
  void (async () => {
    for (const d of ['bin', 'etc', 'dev', 'proc', 'sys', 'root', 'usr', 'usr/bin', 'sbin']) await add({ name: `${d}/`, type: 'directory', mode: 0o755 });
    await add({ name: 'tmp/', type: 'directory', mode: 0o1777 });
    for (const d of ['input', 'output']) await add({ name: `${d}/`, type: 'directory', mode: 0o777, uid: TASK_UID, gid: TASK_GID });
    await add({ name: 'etc/passwd', mode: 0o644 }, 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n');
    await add({ name: 'etc/group', mode: 0o644 }, 'root:x:0:\nnogroup:x:65534:\n');
    await new Promise<void>((resolve, reject) => {
      const sink = pack.entry({ name: 'bin/busybox', size, mode: 0o755, mtime, uid: 0, gid: 0 }, (err) => (err ? reject(err) : resolve()));
      const src = createReadStream(busybox);
      src.on('error', reject);
      src.pipe(sink as unknown as NodeJS.WritableStream);
    });
    for (const a of applets) await add({ name: `bin/${a}`, type: 'symlink', linkname: 'busybox' });
    pack.finalize();
  })().catch((err: unknown) => pack.destroy(err as Error));
  return Readable.from(pack as AsyncIterable<Buffer>, { objectMode: false });
}
