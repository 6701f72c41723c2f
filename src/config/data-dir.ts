// Makes sure a data directory exists and is writable, once, at start: a bad one is a config error
// (exit 2) naming the path and the fix, not a raw ENOTDIR/EACCES from deep inside start-up.
import { mkdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { ConfigError, errorMessage } from '../common/errors.js';

/**
 * Creates `dir` (mode 0700, parents as needed) and proves it writable. Parents are made one by one:
 * Node's recursive mkdir never returns for a path under /proc.
 */
export function ensureDataDir(dir: string, setting = '--data-dir'): string {
  const abs = resolve(dir);
  try {
    const missing: string[] = [];
    for (let d = abs; ; d = dirname(d)) {
      try {
        if (!statSync(d).isDirectory()) throw Object.assign(new Error(`${d} is not a directory`), { code: 'ENOTDIR' });
        break;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || dirname(d) === d) throw err;
        missing.unshift(d);
      }
    }
    for (const d of missing) mkdirSync(d, { mode: 0o700 });
    const probe = join(abs, `.write-test-${process.pid}`);
    writeFileSync(probe, '');
    rmSync(probe);
  } catch (err) {
    throw new ConfigError(`data directory ${abs} is not usable (${errorMessage(err)}): choose a writable directory with ${setting} (or HIVEMIND_DATA_DIR), or fix its owner and permissions`);
  }
  return abs;
}
