// An earlier build of this project, made from a commit of this repository's own history: the
// "old version" of the upgrade test. A detached git worktree in a temp dir, compiled with this
// checkout's TypeScript and dependencies (node_modules symlinked), so nothing is downloaded.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import Database from 'better-sqlite3';

/** The checkout this build belongs to (dist/test/helpers → repository root). */
export const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export class OldBuild {
  private constructor(
    readonly commit: string,
    readonly dir: string,
  ) {}

  /** The CLI entry script of the old build. */
  get cli(): string {
    return join(this.dir, 'dist', 'src', 'cli', 'main.js');
  }

  static build(commit: string): OldBuild {
    const dir = join(mkdtempSync(join(tmpdir(), 'hm-old-build-')), 'src');
    execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'add', '--detach', dir, commit], { stdio: 'pipe' });
    const b = new OldBuild(commit, dir);
    try {
      symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
      execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(dir, 'tsconfig.json')], { stdio: 'pipe' });
      if (!existsSync(b.cli)) throw new Error(`the build of ${commit} has no ${b.cli}`);
      return b;
    } catch (err) {
      b.remove();
      const e = err as { stdout?: Buffer; message: string };
      throw new Error(`building ${commit} failed: ${e.stdout?.toString() ?? e.message}`);
    }
  }

  remove(): void {
    try {
      execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'remove', '--force', this.dir], { stdio: 'pipe' });
    } catch {
      // already gone
    }
    rmSync(dirname(this.dir), { recursive: true, force: true });
    execFileSync('git', ['-C', REPO_ROOT, 'worktree', 'prune'], { stdio: 'pipe' });
  }
}

/** The last commit whose worker schema is 3 (migration 4 adds tasks.logs_sent_until): the upgrade tests' old build. */
export const SCHEMA3_COMMIT = 'a42eafa5923d4734148d0771d70ed38d5c9fc2d9';

export interface WorkerDbFacts {
  version: number;
  columns: string[];
  tasks: { task_id: string; state: string }[];
}

/** What an upgrade must migrate and keep in a worker's database: its schema version, the tasks table's columns and rows. */
export function workerDbFacts(file: string): WorkerDbFacts {
  const db = new Database(file, { readonly: true, fileMustExist: true });
  try {
    return {
      version: db.pragma('user_version', { simple: true }) as number,
      columns: (db.prepare(`PRAGMA table_info(tasks)`).all() as { name: string }[]).map((c) => c.name),
      tasks: db.prepare(`SELECT task_id, state FROM tasks ORDER BY created_at`).all() as { task_id: string; state: string }[],
    };
  } finally {
    db.close();
  }
}
