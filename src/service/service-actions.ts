// The executor of `hivemind service`: every action that changes the system says what it does
// (under the caller's name, e.g. "install.sh: ..."), is counted, and under --dry-run only says
// what it would do. Files are compared by bytes and mode: the same ones are "unchanged".
import type { ServiceHost } from './service-host.js';
import type { TargetOs } from './service-layout.js';

/** A failure with the exit code the command ends with: 1 an action failed, 2 bad usage. */
export class ServiceError extends Error {
  override readonly name = 'ServiceError';
  constructor(
    message: string,
    readonly exitCode: 1 | 2 = 1,
  ) {
    super(message);
  }
}

export const usageError = (message: string) => new ServiceError(message, 2);

/** A command, and how it is shown when that differs from its words joined by spaces. */
export interface Cmd {
  argv: readonly string[];
  shown?: string;
}

const modeText = (mode: number) => `0${mode.toString(8)}`;

export class ServiceActions {
  private changeCount: number;

  constructor(
    private readonly host: ServiceHost,
    /** The name messages go under: "hivemind service", or the script that called it. */
    readonly program: string,
    readonly dryRun: boolean,
    /** Windows has no Unix modes to compare or set. */
    private readonly os: TargetOs,
    /** Changes the caller already made (install.sh: the dependencies), for the summary. */
    priorChanges = 0,
  ) {
    this.changeCount = priorChanges;
  }

  get changes(): number {
    return this.changeCount;
  }

  say(message: string): void {
    this.host.out(`${this.program}: ${message}`);
  }

  print(line: string): void {
    this.host.out(line);
  }

  changed(what: string): void {
    this.changeCount++;
    if (this.dryRun) this.print(`[dry-run] would ${what}`);
    else this.say(what);
  }

  unchanged(what: string): void {
    this.say(`unchanged: ${what}`);
  }

  /** Runs a command that changes the system (echoed "+ ..."), or prints it under --dry-run (then 0). */
  run(cmd: Cmd): number {
    const shown = cmd.shown ?? cmd.argv.join(' ');
    if (this.dryRun) {
      this.print(`[dry-run] would run: ${shown}`);
      return 0;
    }
    this.print(`+ ${shown}`);
    return this.host.commands.run(cmd.argv);
  }

  /** run(), and a failure ends the command. */
  mustRun(cmd: Cmd): void {
    const code = this.run(cmd);
    if (code !== 0) throw new ServiceError(`${cmd.shown ?? cmd.argv.join(' ')} failed (exit ${code})`);
  }

  private modeDiffers(path: string, mode: number): boolean {
    return this.os !== 'windows' && this.host.fs.stat(path)?.mode !== mode;
  }

  /**
   * Installs `content` (bytes, or the file at `from`) as `dest` unless it already has the same
   * bytes and mode. True when it changed (or would).
   */
  putFile(dest: string, content: Buffer | { from: string }, mode: number): boolean {
    const fs = this.host.fs;
    const existing = fs.stat(dest);
    const bytes = Buffer.isBuffer(content) ? content : fs.readFile(content.from);
    if (existing?.kind === 'file' && fs.readFile(dest).equals(bytes)) {
      if (!this.modeDiffers(dest, mode)) {
        this.unchanged(dest);
        return false;
      }
      this.changed(`set mode ${modeText(mode)} on ${dest}`);
      if (!this.dryRun) fs.chmod(dest, mode);
      return true;
    }
    this.changed(`${fs.present(dest) ? 'replace' : 'create'} ${dest} (mode ${modeText(mode)})`);
    if (!this.dryRun) {
      if (Buffer.isBuffer(content)) fs.writeFileAtomic(dest, content, mode);
      else fs.copyFileAtomic(content.from, dest, mode);
    }
    return true;
  }

  /** Creates `dir` with `mode`, or sets its mode. True when it was created (or would be). */
  makeDir(dir: string, mode: number): boolean {
    const fs = this.host.fs;
    if (fs.stat(dir)?.kind === 'dir') {
      if (!this.modeDiffers(dir, mode)) {
        this.unchanged(`${dir}/`);
        return false;
      }
      this.changed(`set mode ${modeText(mode)} on ${dir}/`);
      if (!this.dryRun) fs.chmod(dir, mode);
      return false;
    }
    this.changed(`create ${dir}/ (mode ${modeText(mode)})`);
    if (!this.dryRun) fs.makeDir(dir, mode);
    return true;
  }

  remove(path: string): void {
    if (!this.host.fs.present(path)) return;
    this.changed(`remove ${path}`);
    if (!this.dryRun) this.host.fs.remove(path);
  }

  /** The last line: what changed, or that nothing did. */
  summary(): void {
    if (this.changeCount === 0) this.say('nothing changed');
    else if (this.dryRun) this.say(`dry run: ${this.changeCount} change(s) would be made; nothing was changed`);
    else this.say(`done: ${this.changeCount} change(s)`);
  }
}
