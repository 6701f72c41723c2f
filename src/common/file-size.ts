// The size of a file that may not exist: undefined for a missing one, any other error thrown.
import { stat } from 'node:fs/promises';

export async function fileSize(path: string): Promise<number | undefined> {
  try {
    return (await stat(path)).size;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
