// The node's identity (id + credential) in <dataDir>/identity.json, mode 0600, kept out of the
// SQLite file so that a database copied for debugging never carries the secret.
import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError } from '../common/errors.js';

export interface NodeIdentity {
  nodeId: string;
  /** Secret: never logged. */
  credential: string;
  masterAddress: string;
  registeredAt: number;
}

export const IDENTITY_FILE = 'identity.json';

export function identityPath(dataDir: string): string {
  return path.join(dataDir, IDENTITY_FILE);
}

/** The stored identity, or undefined on a node that never registered. */
export async function loadIdentity(dataDir: string): Promise<NodeIdentity | undefined> {
  const file = identityPath(dataDir);
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  let parsed: Partial<NodeIdentity>;
  try {
    parsed = JSON.parse(text) as Partial<NodeIdentity>;
  } catch (err) {
    throw new ConfigError(`${file} is not valid JSON; delete it to register this node again`, { cause: err });
  }
  if (typeof parsed.nodeId !== 'string' || !parsed.nodeId || typeof parsed.credential !== 'string' || !parsed.credential) {
    throw new ConfigError(`${file} lacks nodeId or credential; delete it to register this node again`);
  }
  return {
    nodeId: parsed.nodeId,
    credential: parsed.credential,
    masterAddress: typeof parsed.masterAddress === 'string' ? parsed.masterAddress : '',
    registeredAt: typeof parsed.registeredAt === 'number' ? parsed.registeredAt : 0,
  };
}

/** Writes atomically (temp file + rename) so a crash never leaves a half-written secret. */
export async function saveIdentity(dataDir: string, identity: NodeIdentity): Promise<void> {
  await mkdir(dataDir, { recursive: true });
  const file = identityPath(dataDir);
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, JSON.stringify(identity, null, 2) + '\n', { mode: 0o600 });
  // mode in writeFile is subject to the umask; make it exact.
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}

/** Written when the master's operator removed this node; the data dir may not be used again. */
export const REMOVED_FILE = 'removed.json';

export interface NodeRemoval {
  nodeId: string;
  masterAddress: string;
  at: number;
  reason: string;
}

export async function saveRemoval(dataDir: string, removal: NodeRemoval): Promise<void> {
  await writeFile(path.join(dataDir, REMOVED_FILE), JSON.stringify(removal, null, 2) + '\n', { mode: 0o600 });
}

/** Refuses to start from the data dir of a removed node, saying how to join again. */
export async function assertNotRemoved(dataDir: string): Promise<void> {
  let text: string;
  try {
    text = await readFile(path.join(dataDir, REMOVED_FILE), 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  let r: Partial<NodeRemoval> = {};
  try {
    r = JSON.parse(text) as Partial<NodeRemoval>;
  } catch {
    // an unreadable marker still means "removed"
  }
  const when = typeof r.at === 'number' ? ` on ${new Date(r.at).toISOString()}` : '';
  throw new ConfigError(
    `node ${r.nodeId ?? '?'} was removed from master ${r.masterAddress ?? '?'}${when}; this data dir (${dataDir}) cannot join again. ` +
      'To rejoin, move the data dir away (or pass a fresh --data-dir) and start with a new join token from `hivemind token create`',
  );
}
