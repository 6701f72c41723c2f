// Files carried inside the standalone executable (Node single-executable application assets,
// put there by scripts/build-exe.ts): the web monitor's page and vendor scripts, and the
// better-sqlite3 addon. Run from dist/ there are none, and callers use the package's files.
import { getAsset, isSea } from 'node:sea';

const standalone = isSea();

/** True when running as the standalone executable. */
export function isStandalone(): boolean {
  return standalone;
}

/** The embedded file under `key` (e.g. "web/monitor.html"); undefined when absent or from dist. */
export function embeddedAsset(key: string): Buffer | undefined {
  if (!standalone) return undefined;
  try {
    return Buffer.from(getAsset(key));
  } catch {
    return undefined;
  }
}
