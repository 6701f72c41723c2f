// Adding one entry to a tar-stream pack and waiting until it is written (a file's body streamed).
import type { Readable } from 'node:stream';
import type tarStream from 'tar-stream';

export type TarHeader = Partial<tarStream.Header> & { name: string };

export function addTarEntry(pack: tarStream.Pack, header: TarHeader, body?: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
    if (body) {
      body.on('error', reject);
      body.pipe(sink as unknown as NodeJS.WritableStream);
    } else {
      (sink as unknown as { end(): void }).end();
    }
  });
}
