#!/usr/bin/env node
// The `hivemind` executable's entry: checks the Node version before loading anything that needs
// a newer one (on Node 20 a dependency fails at import with an unreadable TypeError).
const MIN_NODE_MAJOR = 22;
const major = Number(process.versions.node.split('.')[0]);
if (!(major >= MIN_NODE_MAJOR)) {
  process.stderr.write(
    `hivemind: needs Node.js ${MIN_NODE_MAJOR} or newer (24 LTS recommended), this is ${process.version}. ` +
      'Install a newer Node, or use the standalone executable; in a checkout, `bash scripts/setup.sh` provides one and bin/hivemind uses it.\n',
  );
  process.exit(1);
}
await import('./main.js');
