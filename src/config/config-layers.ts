// The layers of one config section: config file < HIVEMIND_* env < flags, merged with where each
// value came from, and the error that names that origin. Without zod: the client's config
// (client-config.ts) checks its two fields by hand, so a client command does not load zod's ~90
// modules (docs/benchmarks.md, CLI startup); the servers' sections go through layered-config.ts.
import { ConfigError } from '../common/errors.js';
import { keyLine, type ConfigFile } from './config-file.js';

export interface FieldSource {
  /** Environment variable, e.g. HIVEMIND_MAX_TASKS. */
  env?: string;
  /** The CLI flag's key in commander's options object, e.g. maxTasks (for --max-tasks). */
  flag?: string;
}

export interface ConfigInput {
  file?: ConfigFile;
  filePath?: string;
  /** The file's text: errors about a key then give its line. */
  fileText?: string;
  env?: NodeJS.ProcessEnv;
  flags?: Record<string, unknown>;
}

/** Edit distance, for "did you mean" on a mistyped key. */
function distance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const cur = [i];
    for (let j = 1; j <= b.length; j++) cur[j] = Math.min(prev[j]! + 1, cur[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    prev = cur;
  }
  return prev[b.length]!;
}

/** The known key a mistyped one most likely meant, if any is close. */
function closest(key: string, known: string[]): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const k of known) {
    const d = k.toLowerCase() === key.toLowerCase() ? 0 : distance(key, k);
    if (d < bestD) [best, bestD] = [k, d];
  }
  return bestD <= Math.max(2, Math.floor(key.length / 4)) ? best : undefined;
}

function flagName(key: string): string {
  return '--' + key.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}

/** HOST:PORT or [IPv6]:PORT, the form of every address setting (zAddress, and the client's master). */
export const ADDRESS_RE = /^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/;
export const ADDRESS_MESSAGE = 'expected HOST:PORT, e.g. 127.0.0.1:7070';

/** A section's merged raw values, and for each key where its value came from (for errors). */
export interface MergedSection {
  raw: Record<string, unknown>;
  origin: Record<string, string>;
}

/**
 * Merges one section of the file, the environment and the flags (not yet validated).
 * Unknown keys in the file section are errors (a typo must not be silently ignored).
 */
export function mergeSection(section: string, fields: Record<string, FieldSource>, input: ConfigInput): MergedSection {
  const env = input.env ?? process.env;
  const raw: Record<string, unknown> = {};
  const origin: Record<string, string> = {};
  const fileSection = input.file?.[section];
  if (fileSection !== undefined) {
    if (typeof fileSection !== 'object' || fileSection === null || Array.isArray(fileSection)) {
      throw new ConfigError(`config file ${input.filePath ?? ''}: "${section}" must be an object`);
    }
    const fileName = input.filePath ?? 'the config file';
    const at = (k: string) => {
      const line = input.fileText === undefined ? undefined : keyLine(input.fileText, section, k);
      return line === undefined ? fileName : `${fileName} line ${line}`;
    };
    for (const [k, v] of Object.entries(fileSection)) {
      if (!(k in fields)) {
        const known = Object.keys(fields);
        const guess = closest(k, known);
        const fix = guess ? `did you mean "${guess}"? ` : '';
        throw new ConfigError(`config file ${at(k)}: unknown key "${section}.${k}"; ${fix}(known keys: ${known.join(', ')})`);
      }
      raw[k] = v;
      origin[k] = `"${section}.${k}" in ${at(k)}`;
    }
  }
  for (const [k, src] of Object.entries(fields)) {
    const e = src.env ? env[src.env] : undefined;
    if (src.env && e !== undefined && e !== '') {
      raw[k] = e;
      origin[k] = `environment variable ${src.env}`;
    }
    const f = src.flag ? input.flags?.[src.flag] : undefined;
    if (f !== undefined) {
      raw[k] = f;
      origin[k] = `flag ${flagName(src.flag!)}`;
    }
  }
  return { raw, origin };
}

/** The error for a section's invalid values: one line each, naming where the value came from. */
export function invalidConfig(section: string, origin: Record<string, string>, issues: readonly { key: string; message: string }[]): ConfigError {
  const lines = issues.map(({ key, message }) => `${origin[key] ?? `"${section}.${key}"`}: ${message}`);
  return new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
}
