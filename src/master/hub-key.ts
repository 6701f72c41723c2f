// Where the hub's WireGuard private key is kept. Every node pins the hub's public key, so two
// masters on one database must bring up the same hub: with PostgreSQL the key lives in the
// database (table hub_identity), made once by whichever master comes first; with SQLite (one
// master) it stays a file in the data dir. A key file found beside an empty table is imported,
// so a master that moves to PostgreSQL keeps its enrolled nodes.
import { randomBytes } from 'node:crypto';
import { link, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ConfigError } from '../common/errors.js';
import { generateWgKeyPair, isWgKey } from '../tunnel/wg-keys.js';
import type { SqlDriver } from './sql/sql-driver.js';

/** The hub's private key, made on first use. */
export interface HubKeySource {
  privateKey(): Promise<string>;
}

const badKey = (where: string) => new ConfigError(`${where} does not hold a WireGuard private key; move it away to make a new one (every node must then enroll again)`);
const badStoredKey = () => new ConfigError('the database table hub_identity does not hold a WireGuard private key; delete its row to make a new one (every node must then enroll again)');

/** The key file's path in a data dir. */
export const hubKeyFile = (dataDir: string): string => join(dataDir, 'wg', 'private.key');

/** The key file, or undefined when there is none; a file holding something else is an error. */
export async function readHubKeyFile(file: string): Promise<string | undefined> {
  let key: string;
  try {
    key = (await readFile(file, 'utf8')).trim();
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  if (!isWgKey(key)) throw badKey(file);
  return key;
}

/** SQLite's single master: <data>/wg/private.key (0600), created once. */
export class FileHubKey implements HubKeySource {
  constructor(private readonly dataDir: string) {}

  async privateKey(): Promise<string> {
    const file = hubKeyFile(this.dataDir);
    await mkdir(join(this.dataDir, 'wg'), { recursive: true, mode: 0o700 });
    const found = await readHubKeyFile(file);
    if (found) return found;
    const made = generateWgKeyPair().privateKey;
    // Written whole under a name of its own, then linked into place: the key file appears with its
    // key in it or not at all (an exclusive create would show a second master starting at the same
    // moment an empty file, which it would refuse as a damaged key).
    const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}`;
    await writeFile(tmp, made + '\n', { mode: 0o600, flag: 'wx' });
    try {
      await link(tmp, file);
      return made;
    } catch (e) {
      // Two masters on one (shared) data dir starting together: both use the key written first.
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const first = await readHubKeyFile(file);
      if (!first) throw badKey(file);
      return first;
    } finally {
      await rm(tmp, { force: true });
    }
  }
}

/** The row of hub_identity as the master reads and writes it. */
export interface HubKeyTable {
  read(): string | undefined;
  /** Stores `key` unless a key is already stored; returns the stored one (the first writer's). */
  insertIfAbsent(key: string, now: number): string;
}

export class SqlHubKeyTable implements HubKeyTable {
  constructor(private readonly db: SqlDriver) {}

  read(): string | undefined {
    const row = this.db.prepare('SELECT wg_private_key FROM hub_identity WHERE id = 1').get() as { wg_private_key: string } | undefined;
    return row?.wg_private_key;
  }

  insertIfAbsent(key: string, now: number): string {
    // Two masters starting together both insert; the row lock lets one win and the other reads it.
    this.db.prepare('INSERT INTO hub_identity (id, wg_private_key, created_at) VALUES (1, ?, ?) ON CONFLICT (id) DO NOTHING').run(key, now);
    const stored = this.read();
    if (stored === undefined) throw new ConfigError('the hub key row vanished right after it was written (table hub_identity): was it deleted by hand?');
    return stored;
  }
}

/**
 * PostgreSQL: the key in the database. The table's key wins; an empty table takes the data dir's
 * key file if there is one (an upgrade keeps its nodes), else a new key.
 */
export class DbHubKey implements HubKeySource {
  constructor(
    private readonly table: HubKeyTable,
    private readonly dataDir: string,
    private readonly now: () => number = Date.now,
  ) {}

  async privateKey(): Promise<string> {
    const stored = this.table.read();
    if (stored !== undefined) {
      if (!isWgKey(stored)) throw badStoredKey();
      return stored;
    }
    const candidate = (await readHubKeyFile(hubKeyFile(this.dataDir))) ?? generateWgKeyPair().privateKey;
    const won = this.table.insertIfAbsent(candidate, this.now());
    if (!isWgKey(won)) throw badStoredKey();
    return won;
  }
}
