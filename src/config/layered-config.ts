// Options are raw, then compiled once: config file < HIVEMIND_* env < flags, validated by a
// zod schema at this one boundary, with errors that name where the bad value came from.
import { z } from 'zod';
import { ConfigError } from '../common/errors.js';
import { parseDuration, parseSize } from '../common/units.js';
import { WG_NAME_RE } from '../tunnel/wg-spec.js';
import { CONTROL_CHARACTERS, LABEL_KEY_PATTERN, MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS } from '../protocol/node-limits.js';
import { keyLine, type ConfigFile } from './config-file.js';
import { MASTER_DEFAULTS } from './defaults.js';

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

/**
 * Merges one section of the file, the environment and the flags, and validates the result.
 * Unknown keys in the file section are errors (a typo must not be silently ignored).
 */
export function compileSection<S extends z.ZodObject>(
  section: string,
  schema: S,
  fields: Record<string, FieldSource>,
  input: ConfigInput,
): z.infer<S> {
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
  const result = schema.safeParse(raw);
  if (!result.success) {
    const lines = result.error.issues.map((iss) => {
      const key = String(iss.path[0] ?? '');
      const where = origin[key] ?? `"${section}.${key}"`;
      return `${where}: ${iss.message}`;
    });
    throw new ConfigError(`invalid configuration:\n  ${lines.join('\n  ')}`);
  }
  return result.data;
}

// Field types shared by the sections. Strings from env/flags are coerced here, once.

export const zSize = (what: string) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      return parseSize(v, what);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const zDurationMs = (what: string) =>
  z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      return parseDuration(v, what);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const zInt = (min: number, max: number) =>
  z.coerce
    .number({ message: 'expected a number' })
    .int({ message: 'expected a whole number' })
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` });

/** true/false, or (from env and flags) "true"/"false"/"1"/"0". */
export const zBool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean({ message: 'expected true or false' }));

export const zPositive = z.coerce.number({ message: 'expected a number' }).positive({ message: 'must be greater than 0' });

export const zAddress = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, { message: 'expected HOST:PORT, e.g. 127.0.0.1:7070' });

/** A WireGuard interface name (both platforms' limits), the same default for master and worker. */
export const zWgInterface = z
  .string()
  .regex(WG_NAME_RE, { message: 'expected letters, digits, - or _, at most 15 characters' })
  .default(MASTER_DEFAULTS.wgInterface);

export const zLogLevel = z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], {
  message: 'expected one of trace, debug, info, warn, error, fatal, silent',
});

/** "k=v,k2=v2" or an object → a labels map. */
export const zLabels = z.union([z.string(), z.record(z.string(), z.string()), z.array(z.string())]).transform((v, ctx) => {
  let entries: [string, string][];
  if (typeof v === 'object' && !Array.isArray(v)) {
    entries = Object.entries(v);
  } else {
    entries = [];
    for (const p of Array.isArray(v) ? v : v.split(',').filter(Boolean)) {
      const m = /^([^=]+)=(.*)$/.exec(p.trim());
      if (!m) {
        ctx.addIssue({ code: 'custom', message: `label "${p}" is not KEY=VALUE` });
        return z.NEVER;
      }
      entries.push([m[1]!, m[2]!]);
    }
  }
  // The master refuses a registration outside these (protocol/node-limits.ts): say so at start.
  if (entries.length > MAX_LABELS) {
    ctx.addIssue({ code: 'custom', message: `${entries.length} labels, over the limit of ${MAX_LABELS}` });
    return z.NEVER;
  }
  for (const [key, value] of entries) {
    const problem = !LABEL_KEY_PATTERN.test(key) ? 'may only hold letters, digits and _ . - /'
      : key.length > MAX_LABEL_KEY_CHARS ? `is over ${MAX_LABEL_KEY_CHARS} characters`
        : value.length > MAX_LABEL_VALUE_CHARS ? `has a value over ${MAX_LABEL_VALUE_CHARS} characters`
          : CONTROL_CHARACTERS.test(value) ? 'has a value with control characters' : undefined;
    if (problem) {
      ctx.addIssue({ code: 'custom', message: `label "${key.slice(0, 64)}" ${problem}` });
      return z.NEVER;
    }
  }
  // Object.fromEntries defines own properties: a key named __proto__ stays a label.
  return Object.fromEntries(entries) as Record<string, string>;
});
