// Registers gVisor's `runsc` as a Docker runtime in /etc/docker/daemon.json, idempotently, keeping
// every other key. `--network=none` is required: Debian's runsc refuses to start a container whose
// network is set up in the root network namespace ("cannot run with network enabled in root network
// namespace"), and HiveMind tasks have no network anyway. Prints "changed" when the file was
// rewritten (the caller then sends dockerd SIGHUP; dockerd is never restarted), "unchanged" otherwise.
// Usage: node scripts/register-runsc.mjs [daemon.json path] [runsc path]
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';

const file = process.argv[2] ?? '/etc/docker/daemon.json';
const runscPath = process.argv[3] ?? '/usr/bin/runsc';
const wanted = { path: runscPath, runtimeArgs: ['--network=none'] };

let config = {};
if (existsSync(file)) {
  const text = readFileSync(file, 'utf8');
  if (text.trim() !== '') {
    try {
      config = JSON.parse(text);
    } catch (err) {
      console.error(`${file} is not valid JSON (${err.message}); fix it by hand, then rerun`);
      process.exit(1);
    }
  }
  if (typeof config !== 'object' || config === null || Array.isArray(config)) {
    console.error(`${file} does not hold a JSON object; fix it by hand, then rerun`);
    process.exit(1);
  }
}
const runtimes = typeof config.runtimes === 'object' && config.runtimes !== null ? config.runtimes : {};
if (JSON.stringify(runtimes.runsc) === JSON.stringify(wanted)) {
  console.log('unchanged');
} else {
  config.runtimes = { ...runtimes, runsc: wanted };
  const tmp = `${file}.hivemind-tmp`;
  writeFileSync(tmp, `${JSON.stringify(config, null, 2)}\n`, { mode: 0o644 });
  renameSync(tmp, file);
  console.log('changed');
}
