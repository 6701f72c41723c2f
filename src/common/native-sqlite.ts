// How the SQLite stores load better-sqlite3's native addon. From dist/ better-sqlite3 finds its
// own build; the standalone executable carries the addon as an embedded asset, which has to be a
// real file to be loaded: it is written once per content hash to a per-user cache directory.
import { createHash } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { embeddedAsset, isStandalone } from './embedded-assets.js';
import { HivemindError } from './errors.js';

/** The asset key scripts/build-exe.ts stores the target platform's addon under. */
export const SQLITE_ADDON_ASSET = 'native/better_sqlite3.node';

let binding: object | undefined;
let addonFile: string | undefined;

/** Options to spread into `new Database(file, …)`: the embedded addon in the executable, else none. */
export function sqliteOpenOptions(env: NodeJS.ProcessEnv = process.env): { nativeBinding?: string } {
  if (!isStandalone()) return {};
  binding ??= loadEmbeddedAddon(env);
  // better-sqlite3 takes the loaded addon object too; its type definitions only say string.
  return { nativeBinding: binding as unknown as string };
}

/**
 * The standalone executable's addon as a file, for a worker thread's own better-sqlite3 (it loads
 * the same file, so the same SQLite copy, as the main thread); undefined from dist.
 */
export function sqliteAddonFile(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (!isStandalone()) return undefined;
  sqliteOpenOptions(env);
  return addonFile;
}

function cacheDir(env: NodeJS.ProcessEnv): string {
  if (process.platform === 'win32') return join(env.LOCALAPPDATA ?? join(homedir(), 'AppData', 'Local'), 'hivemind', 'cache');
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'hivemind');
}

function loadEmbeddedAddon(env: NodeJS.ProcessEnv): object {
  const bytes = embeddedAsset(SQLITE_ADDON_ASSET);
  if (!bytes) throw new HivemindError('SQLITE_ADDON_MISSING', `this executable carries no ${SQLITE_ADDON_ASSET}: rebuild it with npm run build:exe`);
  const digest = createHash('sha256').update(bytes).digest('hex');
  const file = placeAddon(bytes, digest, env);
  addonFile = file;
  const mod = { exports: {} as object };
  process.dlopen(mod, file);
  return mod.exports;
}

/** A file holding exactly `bytes`: the cached copy when its content matches, else a fresh one. */
function placeAddon(bytes: Buffer, digest: string, env: NodeJS.ProcessEnv): string {
  const name = `better_sqlite3-${digest.slice(0, 16)}.node`;
  try {
    const dir = cacheDir(env);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const file = join(dir, name);
    try {
      if (createHash('sha256').update(readFileSync(file)).digest('hex') === digest) return file;
    } catch {
      // not there yet
    }
    const tmp = `${file}.${process.pid}.tmp`;
    writeFileSync(tmp, bytes, { mode: 0o700 });
    renameSync(tmp, file);
    return file;
  } catch {
    // No usable home (a service user without one, a read-only home): a private temp directory.
    const dir = mkdtempSync(join(tmpdir(), 'hivemind-native-'));
    const file = join(dir, name);
    writeFileSync(file, bytes, { mode: 0o700 });
    chmodSync(dir, 0o700);
    return file;
  }
}
