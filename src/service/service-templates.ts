// The systemd unit and the Windows startup task, kept as files in src/service/templates/ with
// {{PLACEHOLDERS}}, and rendered here. From dist/ the files are read from the package; the
// standalone executable carries them as assets under "service/" (scripts/build-exe.ts).
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { embeddedAsset, isStandalone } from '../common/embedded-assets.js';
import { STOP_MARGIN_S, stopTimeoutSeconds, windowsPath } from './service-layout.js';

export const SYSTEMD_UNIT_TEMPLATE = 'hivemind-worker.service';
export const WINDOWS_TASK_TEMPLATE = 'HiveMindWorker.xml';
/** The asset key prefix in the standalone executable. */
export const TEMPLATE_ASSET_PREFIX = 'service/';

/** src/service/templates of the package, from dist/src/service/ or src/service/. */
function templateDir(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  for (const up of ['../../../src/service', '.']) {
    const dir = resolve(here, up, 'templates');
    if (existsSync(join(dir, SYSTEMD_UNIT_TEMPLATE))) return dir;
  }
  return resolve(here, 'templates');
}

/** A template's text, from the executable's assets or the package's files. */
export function loadTemplate(name: string): string {
  if (isStandalone()) {
    const embedded = embeddedAsset(`${TEMPLATE_ASSET_PREFIX}${name}`);
    if (!embedded) throw new Error(`the executable carries no ${TEMPLATE_ASSET_PREFIX}${name}: it was built without the service templates`);
    return embedded.toString('utf8');
  }
  return readFileSync(join(templateDir(), name), 'utf8');
}

/** Replaces every {{KEY}}; a placeholder without a value (or a value without a placeholder) is a bug. */
export function fillTemplate(template: string, values: Readonly<Record<string, string>>): string {
  const used = new Set<string>();
  const text = template.replace(/\{\{([A-Z_]+)\}\}/g, (_m, key: string) => {
    const v = values[key];
    if (v === undefined) throw new Error(`template placeholder {{${key}}} has no value`);
    used.add(key);
    return v;
  });
  const unused = Object.keys(values).filter((k) => !used.has(k));
  if (unused.length) throw new Error(`template has no placeholder for ${unused.join(', ')}`);
  return text;
}

export interface UnitParams {
  /** The command that runs the worker: the installed executable, or node and the CLI script. */
  command: readonly string[];
  configFile: string;
  dataDir: string;
  /** The drain timeout as configured (e.g. "10m"), for the comment. */
  drainTimeout: string;
  drainTimeoutMs: number;
}

/** The systemd unit: drains on SIGTERM, killed after the drain timeout plus STOP_MARGIN_S. */
export function renderSystemdUnit(p: UnitParams, template = loadTemplate(SYSTEMD_UNIT_TEMPLATE)): string {
  // StateDirectory only names directories under /var/lib; another data dir is made writable instead
  const state = p.dataDir === '/var/lib/hivemind' ? 'StateDirectory=hivemind\nStateDirectoryMode=0700' : `ReadWritePaths=${p.dataDir}`;
  return fillTemplate(template, {
    EXEC_START: [...p.command, '--config', p.configFile, 'worker', 'start'].join(' '),
    DATA_DIR: p.dataDir,
    DRAIN_TIMEOUT: p.drainTimeout,
    STOP_MARGIN_S: String(STOP_MARGIN_S),
    TIMEOUT_STOP_SEC: String(stopTimeoutSeconds(p.drainTimeoutMs)),
    STATE_DIRECTORY: state,
  });
}

export function xmlEscape(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

export interface TaskParams {
  command: readonly string[];
  configFile: string;
  dataDir: string;
  logDir: string;
}

/**
 * The Task Scheduler task: at boot, as SYSTEM (Docker Desktop's pipe and WireGuard need an
 * admin), no run-time limit (the default kills a task after 72 h), restarted on failure.
 */
export function renderWindowsTask(p: TaskParams, template = loadTemplate(WINDOWS_TASK_TEMPLATE)): string {
  const [program, ...leading] = p.command;
  const quoted = (path: string) => `"${xmlEscape(windowsPath(path))}"`;
  const args = [...leading.map(quoted), '--config', quoted(p.configFile), 'worker', 'start', '--log-file', quoted(`${p.logDir}/worker.log`)];
  return fillTemplate(template, {
    COMMAND: xmlEscape(windowsPath(program!)),
    ARGUMENTS: args.join(' '),
    WORKING_DIRECTORY: xmlEscape(windowsPath(p.dataDir)),
  });
}
