// The package version, read once from package.json next to the build.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

function findPackageJson(): { version: string } {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      return JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version: string };
    } catch {
      dir = dirname(dir);
    }
  }
  return { version: '0.0.0' };
}

export const VERSION = findPackageJson().version;
