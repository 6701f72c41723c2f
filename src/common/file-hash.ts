// The sha256 (hex) of a file's bytes, streamed.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';

export async function sha256OfFile(path: string, signal?: AbortSignal): Promise<string> {
  const h = createHash('sha256');
  await pipeline(createReadStream(path), h, ...(signal ? [{ signal }] : []));
  return h.digest('hex');
}
