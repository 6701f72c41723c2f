// What this build is: the package version, the commit it was built from and the Node running it.
// The standalone executable has both embedded at build time (scripts/build-exe.ts); from dist/
// they come from package.json and, when this is a git checkout, from git.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Replaced by esbuild's `define` in the executable's bundle; undeclared everywhere else. */
declare const __HIVEMIND_BUILD__: { version: string; commit: string } | undefined;

const embedded = typeof __HIVEMIND_BUILD__ === 'undefined' ? undefined : __HIVEMIND_BUILD__;

/** The directory holding package.json (dist/src/common → three up; src/common → two up). */
function packageRoot(): string | undefined {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.version) return dir;
    } catch {
      // not here; look one level up
    }
    dir = dirname(dir);
  }
  return undefined;
}

function readVersion(): string {
  if (embedded) return embedded.version;
  const root = packageRoot();
  if (!root) return 'unknown';
  return (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
}

/** The package version (package.json's, or the one embedded in the executable). */
export const VERSION = readVersion();

let commit: string | undefined;
/** The short commit: embedded in the executable; from dist, asked of git (once), else "unknown". */
export function buildCommit(): string {
  if (commit !== undefined) return commit;
  if (embedded) return (commit = embedded.commit);
  const root = packageRoot();
  try {
    if (!root) throw new Error('no package root');
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'], timeout: 5_000 }).toString().trim() || 'unknown';
  } catch {
    commit = 'unknown';
  }
  return commit;
}

/** The line `hivemind --version` prints. */
export function versionLine(): string {
  return `hivemind ${VERSION} (commit ${buildCommit()}, node ${process.version}${embedded ? ', standalone' : ''})`;
}
