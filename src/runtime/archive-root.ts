// Docker names the entries of a container path's archive after the path's last component
// ("output/", "output/a"); Podman names a mount point's entries from "/" ("/", "/a"). This puts
// Podman's names in Docker's form, so the result filter (which rejects absolute names) sees one shape.
import { posix } from 'node:path';
import { Readable } from 'node:stream';
import tarStream from 'tar-stream';

const BLOCK = 512;

/**
 * The archive of container path `path`, its entries named as Docker names them. A stream whose
 * first entry is not absolute (Docker's) passes through untouched, byte for byte; otherwise each
 * entry is re-packed under `<basename(path)>/`.
 */
export async function dockerRootedArchive(source: Readable, path: string): Promise<Readable> {
  const it = source[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
  const head: Buffer[] = [];
  let size = 0;
  while (size < BLOCK) {
    const next = await it.next();
    if (next.done) break;
    head.push(next.value);
    size += next.value.length;
  }
  // A reader that stops early (a rejected result) must end the engine's response too: left open,
  // Docker holds the copy, and the container's volume with it.
  const rest = async function* () {
    try {
      yield* head;
      for (let n = await it.next(); !n.done; n = await it.next()) yield n.value;
    } finally {
      source.destroy();
    }
  };
  const first = Buffer.concat(head);
  if (first.length < BLOCK || first[0] !== 0x2f /* "/" */) return Readable.from(rest(), { objectMode: false });
  const root = posix.basename(path);
  const input = Readable.from(rest(), { objectMode: false });
  const extract = tarStream.extract();
  const pack = tarStream.pack();
  input.on('error', (err) => extract.destroy(err));
  input.pipe(extract as unknown as NodeJS.WritableStream);
  // A reader that stops early destroys `pack`: stop reading the engine's stream as well.
  pack.on('close', () => {
    extract.destroy();
    input.destroy();
  });
  void (async () => {
    try {
      for await (const entry of extract) {
        const header = entry.header;
        const name = header.name.replace(/^\/+/, '');
        header.name = name === '' ? `${root}/` : `${root}/${name}`;
        // pack.entry throws once pack is destroyed: that rejection ends the loop like any other.
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry(header, (err) => (err ? reject(err) : resolve()));
          (entry as unknown as Readable).pipe(sink as unknown as NodeJS.WritableStream);
        });
      }
      pack.finalize();
    } catch (err) {
      pack.destroy(err as Error);
    }
  })();
  return pack as unknown as Readable;
}
