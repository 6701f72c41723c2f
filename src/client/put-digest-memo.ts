// What `hivemind data put` hashed before: the digest of a local file or directory, kept with a
// fingerprint that changes whenever its bytes may have (every entry's path, type, size, mode,
// inode and mtime in nanoseconds, from lstat alone). Putting unchanged bytes again then needs one
// stat walk and one question to the master instead of hashing (and packing) gigabytes.
import { createHash } from 'node:crypto';
import { lstat, mkdir, readdir, readFile, rename, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';

/** Entries kept; the least recently used go first. */
export const MAX_MEMO_ENTRIES = 256;

export interface MemoEntry {
  fingerprint: string;
  /** 64 lowercase hex digits. */
  sha256: string;
  size: number;
  kind: 'file' | 'dir';
  usedAt: number;
}

/** The fingerprint of a file or a directory tree; changes when any entry's metadata does. */
export async function fingerprintPath(path: string): Promise<string> {
  const h = createHash('sha256');
  const line = async (rel: string): Promise<boolean> => {
    const st = await lstat(join(path, rel), { bigint: true });
    const type = st.isDirectory() ? 'd' : st.isFile() ? 'f' : 'o';
    h.update(`${JSON.stringify(rel)} ${type} ${st.size} ${st.mode} ${st.ino} ${st.dev} ${st.mtimeNs}\n`);
    return st.isDirectory();
  };
  const walk = async (rel: string): Promise<void> => {
    for (const name of (await readdir(join(path, rel))).sort()) {
      const child = rel ? `${rel}/${name}` : name;
      if (await line(child)) await walk(child);
    }
  };
  if (await line('')) await walk('');
  return h.digest('hex');
}

export class PutDigestMemo {
  private constructor(
    private readonly file: string,
    private readonly entries: Map<string, MemoEntry>,
  ) {}

  /** The memo at `file`; a missing or unreadable one starts empty (it is only a shortcut). */
  static async load(file: string): Promise<PutDigestMemo> {
    const entries = new Map<string, MemoEntry>();
    try {
      const raw = JSON.parse(await readFile(file, 'utf8')) as unknown;
      if (raw && typeof raw === 'object' && !Array.isArray(raw)) {
        for (const [path, e] of Object.entries(raw as Record<string, Partial<MemoEntry>>)) {
          if (isEntry(e)) entries.set(path, e);
        }
      }
    } catch {
      // no memo yet, or a damaged one: start afresh
    }
    return new PutDigestMemo(file, entries);
  }

  /** The entry for `path` if its fingerprint is still `fingerprint`. */
  lookup(path: string, fingerprint: string): MemoEntry | undefined {
    const e = this.entries.get(path);
    return e && e.fingerprint === fingerprint ? e : undefined;
  }

  /** Records (or refreshes) `path` and writes the memo, keeping the most recently used entries. */
  async remember(path: string, entry: MemoEntry): Promise<void> {
    this.entries.delete(path);
    this.entries.set(path, entry);
    const kept = [...this.entries].sort((a, b) => b[1].usedAt - a[1].usedAt).slice(0, MAX_MEMO_ENTRIES);
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    await writeFile(tmp, JSON.stringify(Object.fromEntries(kept)), { mode: 0o600 });
    await rename(tmp, this.file);
  }
}

function isEntry(e: Partial<MemoEntry> | undefined): e is MemoEntry {
  return (
    typeof e === 'object' && e !== null &&
    typeof e.fingerprint === 'string' && typeof e.sha256 === 'string' && /^[0-9a-f]{64}$/.test(e.sha256) &&
    typeof e.size === 'number' && Number.isSafeInteger(e.size) && e.size > 0 &&
    (e.kind === 'file' || e.kind === 'dir') && typeof e.usedAt === 'number'
  );
}
