// The client commands start at once because they load only what they use (main.ts, command-table.ts):
// this runs the built CLI with a preload that lists every module the process loaded, and fails
// when one of them pulls the master, the worker, the monitor, Docker's client or a server library
// back into a client command's startup.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CLI, runProcess } from '../helpers/cli-process.js';

const PRELOAD = pathToFileURL(join(import.meta.dirname, '..', 'helpers', 'loaded-modules-preload.js')).href;
const ENTRY = join(import.meta.dirname, '..', '..', 'src', 'cli', 'hivemind.js');
/** What bin/hivemind runs: `npm run build`'s bundle of ENTRY (scripts/build-cli-bundle.ts). */
const BUNDLE = join(import.meta.dirname, '..', '..', 'cli-bundle', 'hivemind.js');

/** What no client command may load: each is a server's, the node's or the monitor's. */
const HEAVY: readonly RegExp[] = [
  /\/node_modules\/dockerode\//,
  /\/node_modules\/docker-modem\//,
  /\/node_modules\/better-sqlite3\//,
  /\/node_modules\/express\//,
  /\/node_modules\/socket\.io\//,
  /\/node_modules\/systeminformation\//,
  /\/node_modules\/prom-client\//,
  /\/node_modules\/pino\//,
  /\/node_modules\/pino-pretty\//,
  /\/node_modules\/execa\//,
  /\/src\/master\/master\.js$/,
  /\/src\/master\/(?!spec-validation\.js$)[^/]+$/,
  /\/src\/worker\//,
  /\/src\/monitor\//,
  /\/src\/runtime\/docker-engine\.js$/,
];

async function loadedBy(args: string[], entry = ENTRY): Promise<string[]> {
  const dir = mkdtempSync(join(tmpdir(), 'hivemind-modules-'));
  try {
    const out = join(dir, 'loaded.txt');
    // No master is needed: --help stops after the command's module is registered and parsed.
    const r = await runProcess(process.execPath, ['--import', PRELOAD, entry, ...args], {
      env: { ...process.env, HIVEMIND_LOADED_MODULES_OUT: out, HIVEMIND_HOME: dir },
      timeoutMs: 30_000,
      what: `hivemind ${args.join(' ')}`,
    });
    assert.equal(r.code, 0, r.stderr);
    return readFileSync(out, 'utf8').split('\n').filter(Boolean);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

for (const args of [['--version'], ['tasks', '--help'], ['get', '--help'], ['submit', '--help'], ['logs', '--help'], ['wait', '--help']]) {
  test(`hivemind ${args.join(' ')} loads no server, node or monitor module`, async () => {
    const loaded = await loadedBy(args);
    assert.ok(loaded.some((u) => u.endsWith('/src/cli/main.js')), `the preload saw the CLI load (${CLI})`);
    const heavy = loaded.filter((u) => HEAVY.some((re) => re.test(u)));
    assert.deepEqual(heavy, []);
  });
}

test('hivemind --version loads neither gRPC nor zod nor the protocol', async () => {
  const loaded = await loadedBy(['--version']);
  assert.deepEqual(
    loaded.filter((u) => /\/node_modules\/(@grpc|zod|@bufbuild)\//.test(u) || /\/src\/protocol\//.test(u)),
    [],
  );
});

for (const args of [['tasks', '--help'], ['submit', '--help']]) {
  test(`hivemind ${args.join(' ')} loads no zod (the client config is checked by hand)`, async () => {
    const loaded = await loadedBy(args);
    assert.ok(loaded.some((u) => u.includes('/node_modules/@grpc/grpc-js/')), 'the preload saw the client load');
    assert.deepEqual(loaded.filter((u) => /\/node_modules\/zod\/|\/src\/config\/layered-config\.js$/.test(u)), []);
  });
}

test('the check sees a heavy module when one is loaded (worker start loads the worker)', async () => {
  const loaded = await loadedBy(['worker', 'start', '--help']);
  assert.ok(loaded.some((u) => HEAVY.some((re) => re.test(u))), 'worker start --help loaded nothing the list names: the list or the preload is broken');
});

for (const args of [['--version'], ['tasks', '--help'], ['submit', '--help'], ['logs', '--help']]) {
  test(`the bundle's hivemind ${args.join(' ')} loads no server library and none of dist/src`, async () => {
    const loaded = await loadedBy(args, BUNDLE);
    assert.ok(loaded.some((u) => u.endsWith('/cli-bundle/hivemind.js')), 'the preload saw the bundle load');
    // A file of dist/src here means the bundle reaches outside itself (a path the bundler could not
    // follow), and a node_modules file one of the externals (the server libraries) on a client path.
    const outside = loaded.filter((u) => /\/dist\/src\//.test(u) || (/\/node_modules\//.test(u) && !/\/node_modules\/@types\//.test(u)));
    assert.deepEqual(outside, []);
    // Code splitting is on: a command's code comes in chunks of its own (one bundle file would make
    // every command pay for all of them, the master's and the worker's included).
    const chunks = loaded.filter((u) => /\/cli-bundle\/chunk-[^/]+\.js$/.test(u));
    assert.ok(chunks.length > 0 || args[0] === '--version', `no chunk loaded for ${args.join(' ')}`);
  });
}

test('the bundle check sees a server library when one is loaded (worker start --help loads the worker)', async () => {
  const loaded = await loadedBy(['worker', 'start', '--help'], BUNDLE);
  assert.ok(loaded.some((u) => HEAVY.some((re) => re.test(u))), 'worker start --help through the bundle loaded no server library: the check is blind');
});
