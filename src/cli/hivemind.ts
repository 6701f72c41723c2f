#!/usr/bin/env node
// The `hivemind` executable's entry: checks the Node version before loading anything that needs
// a newer one (on Node 20 a dependency fails at import with an unreadable TypeError).
import { mkdirSync } from 'node:fs';
import module from 'node:module';
import { homedir } from 'node:os';
import { join } from 'node:path';

const MIN_NODE_MAJOR = 22;
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= MIN_NODE_MAJOR)) {
  process.stderr.write(
    `hivemind: needs Node.js ${MIN_NODE_MAJOR} or newer (24 LTS recommended), this is ${process.version}. ` +
      'Install a newer Node, or use the standalone executable; in a checkout, `bash scripts/setup.sh` provides one and bin/hivemind uses it.\n',
  );
  process.exit(1);
}
enableCompileCache();
await import('./main.js');

/**
 * V8's compiled code for the CLI and its dependencies, kept between runs (Node >= 22.1): a command
 * then skips most of the parsing and compiling of the JavaScript it loads. Under the user's cache
 * (XDG_CACHE_HOME, else ~/.cache), in hivemind/compile-cache; NODE_COMPILE_CACHE, when set, is
 * Node's own and wins. A cache that cannot be made (read-only home) only costs the speed-up: the
 * command runs exactly as without it, so no error is worth printing.
 */
function enableCompileCache(): void {
  if (typeof module.enableCompileCache !== 'function' || process.env.NODE_COMPILE_CACHE) return;
  try {
    const base = process.env.XDG_CACHE_HOME || join(homedir(), '.cache');
    const dir = join(base, 'hivemind', 'compile-cache');
    mkdirSync(dir, { recursive: true });
    module.enableCompileCache(dir);
  } catch {
    // unwritable or no home: run without the cache (see above)
  }
}
