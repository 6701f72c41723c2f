// Part of `npm run build` (after tsc): the CLI bundled for a checkout's bin/hivemind, in
// dist/cli-bundle/. Node's ESM loader spends more on finding, reading and linking the ~270 files of
// `hivemind tasks` (resolution, package.json lookups, one module record each) than on running
// them; one entry file plus a few chunks (code splitting keeps each command's module its own
// chunk, loaded only for that command, as command-table.ts does in dist/src) halves a client
// command's start. See docs/benchmarks.md, CLI startup.
// The tests keep running dist/src (test/helpers/cli-process.ts); the standalone executable has its
// own CommonJS bundle (scripts/build-exe.ts).
import { readFileSync, rmSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { build, type Plugin } from 'esbuild';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const distSrc = join(root, 'dist', 'src');
export const CLI_BUNDLE_DIR = join(root, 'dist', 'cli-bundle');

/**
 * The packages bundled in: those a client command loads. Every other dependency stays an import
 * Node resolves from node_modules as before: the servers' libraries are not on a client command's
 * path, and some cannot be bundled at all (better-sqlite3's addon, pino's transports that start
 * worker threads by file name).
 */
const BUNDLED_PACKAGES: ReadonlySet<string> = new Set(['@grpc/grpc-js', '@bufbuild/protobuf', 'commander', 'zod', 'tar-stream']);

function externalPackages(): string[] {
  const pkg = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
  return [...Object.keys(pkg.dependencies), ...Object.keys(pkg.devDependencies)].filter((n) => !BUNDLED_PACKAGES.has(n));
}

/**
 * Each of our modules keeps its own import.meta.url: build-info.ts finds package.json from it,
 * web-assets.ts and service-templates.ts their files, netns-connector.ts the child script next to
 * it. Rewritten as the module's dist/src file, relative to the chunk it lands in, so the checkout
 * can still be moved after the build.
 */
const ownImportMetaUrl: Plugin = {
  name: 'own-import-meta-url',
  setup(b) {
    b.onLoad({ filter: /\.js$/ }, (args) => {
      if (!args.path.startsWith(distSrc + sep)) return undefined;
      const code = readFileSync(args.path, 'utf8');
      if (!code.includes('import.meta.url')) return undefined;
      // Every chunk sits directly in CLI_BUNDLE_DIR (chunkNames/entryNames below).
      const rel = relative(CLI_BUNDLE_DIR, args.path).split(sep).join('/');
      return { contents: code.replaceAll('import.meta.url', `new URL(${JSON.stringify(rel)}, import.meta.url).href`), loader: 'js' };
    });
  },
};

export async function buildCliBundle(): Promise<void> {
  rmSync(CLI_BUNDLE_DIR, { recursive: true, force: true });
  await build({
    entryPoints: { hivemind: join(distSrc, 'cli', 'hivemind.js') },
    outdir: CLI_BUNDLE_DIR,
    entryNames: '[name]',
    chunkNames: 'chunk-[hash]',
    bundle: true,
    splitting: true,
    format: 'esm',
    platform: 'node',
    target: 'node22',
    logLevel: 'warning',
    legalComments: 'none',
    external: externalPackages(),
    plugins: [ownImportMetaUrl],
    // The bundled CommonJS packages (grpc-js, tar-stream) call require() for Node's own modules;
    // an ES module has none, so each chunk gets one.
    banner: { js: "import { createRequire as __hmCreateRequire } from 'node:module'; const require = __hmCreateRequire(import.meta.url);" },
  });
}

if (process.argv[1] && pathToFileURL(process.argv[1]).href === import.meta.url) {
  buildCliBundle().catch((err: unknown) => {
    process.stderr.write(`[build:cli-bundle] failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  });
}
