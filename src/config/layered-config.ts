// Options are raw, then compiled once: config file < HIVEMIND_* env < flags, validated by a
// zod schema at this one boundary, with errors that name where the bad value came from (the
// merging and the error's wording are config-layers.ts's, shared with the zod-free client config).
import { z } from 'zod';
import { parseDuration, parseSize } from '../common/units.js';
import { WG_NAME_RE } from '../tunnel/wg-spec.js';
import { CONTROL_CHARACTERS, LABEL_KEY_PATTERN, MAX_LABEL_KEY_CHARS, MAX_LABEL_VALUE_CHARS, MAX_LABELS } from '../protocol/node-limits.js';
import { ADDRESS_MESSAGE, ADDRESS_RE, invalidConfig, mergeSection, type ConfigInput, type FieldSource } from './config-layers.js';
import { MASTER_DEFAULTS } from './defaults.js';
import { parseMasterList } from './master-list.js';

export type { ConfigInput, FieldSource } from './config-layers.js';

/** Merges one section of the file, the environment and the flags (config-layers.ts), and validates the result. */
export function compileSection<S extends z.ZodObject>(
  section: string,
  schema: S,
  fields: Record<string, FieldSource>,
  input: ConfigInput,
): z.infer<S> {
  const { raw, origin } = mergeSection(section, fields, input);
  const result = schema.safeParse(raw);
  if (!result.success) {
    throw invalidConfig(section, origin, result.error.issues.map((iss) => ({ key: String(iss.path[0] ?? ''), message: iss.message })));
  }
  return result.data;
}

// Field types shared by the sections. Strings from env/flags are coerced here, once.

/** A field `parse` turns into its compiled form; what `parse` throws is the field's error. */
export const zParsed = <I, T>(input: z.ZodType<I>, parse: (v: I) => T) =>
  input.transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });

export const zSize = (what: string) => zParsed(z.union([z.string(), z.number()]), (v) => parseSize(v, what));

export const zDurationMs = (what: string) => zParsed(z.union([z.string(), z.number()]), (v) => parseDuration(v, what));

export const zInt = (min: number, max: number) =>
  z.coerce
    .number({ message: 'expected a number' })
    .int({ message: 'expected a whole number' })
    .min(min, { message: `must be at least ${min}` })
    .max(max, { message: `must be at most ${max}` });

/** true/false, or (from env and flags) "true"/"false"/"1"/"0". */
export const zBool = z.preprocess((v) => (v === 'true' || v === '1' ? true : v === 'false' || v === '0' ? false : v), z.boolean({ message: 'expected true or false' }));

export const zPositive = z.coerce.number({ message: 'expected a number' }).positive({ message: 'must be greater than 0' });

export const zAddress = z.string().regex(ADDRESS_RE, { message: ADDRESS_MESSAGE });

/**
 * One master or several (HOST:PORT, comma-separated, or a list in the file), checked by the
 * function the CLI's hand-written client config uses too, so both word a fault the same way.
 */
export const zMasterList = z.unknown().transform((v, ctx): string[] | undefined => {
  if (v === undefined) return undefined;
  const r = parseMasterList(v);
  if ('addresses' in r) return r.addresses;
  ctx.addIssue({ code: 'custom', message: r.problem });
  return z.NEVER;
});

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
