// A minimal Docker registry (Distribution API v2, read-only) on 127.0.0.1 serving one image made
// from a local one, so that tests can make the daemon *pull* without any reachable registry.
// Docker trusts plain HTTP registries on 127.0.0.0/8. Layer downloads can be throttled, to catch
// a worker in the middle of a pull.
import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { gzipSync } from 'node:zlib';
import tarStream from 'tar-stream';

interface Blob {
  mediaType: string;
  data: Buffer;
  digest: string;
}

const sha = (b: Buffer) => `sha256:${createHash('sha256').update(b).digest('hex')}`;

/** The config and layers of a local image, read from `docker save` (legacy layout). */
async function savedImage(image: string): Promise<{ config: Buffer; layers: Buffer[] }> {
  const files = new Map<string, Buffer>();
  const extract = tarStream.extract();
  extract.on('entry', (header, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => chunks.push(c as Buffer));
    stream.on('end', () => {
      files.set(header.name, Buffer.concat(chunks));
      next();
    });
  });
  const done = new Promise<void>((resolve, reject) => {
    extract.on('finish', resolve);
    extract.on('error', reject);
  });
  const save = spawn('docker', ['save', image], { stdio: ['ignore', 'pipe', 'inherit'] });
  save.stdout.pipe(extract);
  await done;
  const manifest = JSON.parse(files.get('manifest.json')!.toString()) as { Config: string; Layers: string[] }[];
  const m = manifest[0]!;
  return { config: files.get(m.Config)!, layers: m.Layers.map((l) => files.get(l)!) };
}

/** A one-file tar archive. */
async function tarOf(name: string, data: Buffer): Promise<Buffer> {
  const pack = tarStream.pack();
  pack.entry({ name, mode: 0o644 }, data);
  pack.finalize();
  const chunks: Buffer[] = [];
  for await (const c of pack as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

export class LocalRegistry {
  /** Layer bytes served so far (all pulls). */
  layerBytesServed = 0;

  private constructor(
    private readonly server: Server,
    readonly port: number,
    readonly image: string,
  ) {}

  /**
   * Serves `source` (a local image) as 127.0.0.1:PORT/<repo>:<tag>. Layers go out at
   * `bytesPerSecond` when given.
   */
  static async start(source: string, repo: string, tag: string, opts: { bytesPerSecond?: number; extraLayerBytes?: number } = {}): Promise<LocalRegistry> {
    const saved = await savedImage(source);
    // The daemon already has the source's layers and would skip them: one more layer of random
    // bytes makes the image new, and its download is what takes time.
    const extra = await tarOf('hm-pull-test.bin', randomBytes(opts.extraLayerBytes ?? 1024 * 1024));
    saved.layers.push(extra);
    const cfg = JSON.parse(saved.config.toString()) as { rootfs: { diff_ids: string[] } };
    cfg.rootfs.diff_ids.push(sha(extra));
    saved.config = Buffer.from(JSON.stringify(cfg));
    const config: Blob = { mediaType: 'application/vnd.docker.container.image.v1+json', data: saved.config, digest: sha(saved.config) };
    const layers: Blob[] = saved.layers.map((l) => {
      const data = gzipSync(l);
      return { mediaType: 'application/vnd.docker.image.rootfs.diff.tar.gzip', data, digest: sha(data) };
    });
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: 'application/vnd.docker.distribution.manifest.v2+json',
        config: { mediaType: config.mediaType, size: config.data.length, digest: config.digest },
        layers: layers.map((l) => ({ mediaType: l.mediaType, size: l.data.length, digest: l.digest })),
      }),
    );
    const blobs = new Map([config, ...layers].map((b) => [b.digest, b]));
    const layerDigests = new Set(layers.map((l) => l.digest));
    let registry: LocalRegistry;
    const server = createServer((req, res) => {
      const url = req.url ?? '';
      if (url === '/v2/' || url === '/v2') {
        res.writeHead(200, { 'Content-Type': 'application/json', 'Docker-Distribution-API-Version': 'registry/2.0' }).end('{}');
        return;
      }
      const mm = new RegExp(`^/v2/${repo}/manifests/(.+)$`).exec(url);
      if (mm && (mm[1] === tag || mm[1] === sha(manifest))) {
        res.writeHead(200, { 'Content-Type': 'application/vnd.docker.distribution.manifest.v2+json', 'Docker-Content-Digest': sha(manifest), 'Content-Length': manifest.length });
        res.end(req.method === 'HEAD' ? undefined : manifest);
        return;
      }
      const bm = new RegExp(`^/v2/${repo}/blobs/(sha256:[0-9a-f]{64})$`).exec(url);
      const blob = bm ? blobs.get(bm[1]!) : undefined;
      if (!blob) {
        res.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ errors: [{ code: 'NAME_UNKNOWN', message: `no ${url}` }] }));
        return;
      }
      res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Docker-Content-Digest': blob.digest, 'Content-Length': blob.data.length });
      if (req.method === 'HEAD') return void res.end();
      const rate = layerDigests.has(blob.digest) ? opts.bytesPerSecond : undefined;
      if (!rate) {
        if (layerDigests.has(blob.digest)) registry.layerBytesServed += blob.data.length;
        res.end(blob.data);
        return;
      }
      // Throttled: a slice every 100 ms.
      const slice = Math.max(1, Math.floor(rate / 10));
      let pos = 0;
      const timer = setInterval(() => {
        if (res.destroyed) return clearInterval(timer);
        const part = blob.data.subarray(pos, pos + slice);
        pos += part.length;
        registry.layerBytesServed += part.length;
        if (pos >= blob.data.length) {
          clearInterval(timer);
          res.end(part);
        } else {
          res.write(part);
        }
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as { port: number }).port;
    registry = new LocalRegistry(server, port, `127.0.0.1:${port}/${repo}:${tag}`);
    return registry;
  }

  /** Stops serving and removes the pulled image from the daemon. */
  async close(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    try {
      execFileSync('docker', ['rmi', '-f', this.image], { stdio: 'ignore' });
    } catch {
      // not pulled
    }
  }
}
