// The master setting as a list: `--master a:7070,b:7070`, HIVEMIND_MASTER the same, the file's
// `master` a string or a list. Several masters share one store (one active, the others standby);
// nodes and the CLI try them in order. Checked by hand, without zod: the CLI's client config uses
// it on its fast path (config-layers.ts), and the worker's zod schema wraps the same function so
// both give the same wording.
import { echoValue } from '../common/echo-value.js';

/** More masters than this is a mistake (or a hostile file), not an HA setup. */
export const MAX_MASTERS = 8;
/** A host name is at most 253 characters; with brackets and a port, this bounds an entry. */
export const MAX_MASTER_ADDRESS_CHARS = 262;

const HOST_PORT = /^([^\s:[\]]+):(\d{1,5})$|^\[([0-9a-fA-F:.]+)\]:(\d{1,5})$/;

/**
 * The addresses in order, or the one problem with them, worded for a config error
 * ("entry 2 is empty (a stray comma?)"). Duplicates are refused: a repeated master would be
 * tried twice in a row and hide a typo in the other entry.
 */
export function parseMasterList(value: unknown): { addresses: string[] } | { problem: string } {
  let entries: unknown[];
  if (typeof value === 'string') entries = value.split(',').map((s) => s.trim());
  else if (Array.isArray(value)) entries = value;
  else return { problem: `expected HOST:PORT or a comma-separated list of them, received ${value === null ? 'null' : typeof value}` };
  if (entries.length === 0) return { problem: 'expected at least one HOST:PORT' };
  if (entries.length > MAX_MASTERS) return { problem: `${entries.length} master addresses, at most ${MAX_MASTERS}` };
  const addresses: string[] = [];
  const many = entries.length > 1;
  for (const [i, e] of entries.entries()) {
    // One address: "expected …, received "x""; several: "entry 2 "x": expected …".
    const bad = (what: string, shown?: string) =>
      ({ problem: many ? `entry ${i + 1}${shown === undefined ? '' : ` "${shown}"`}: ${what}` : `${what}${shown === undefined ? '' : `, received "${shown}"`}` });
    if (typeof e !== 'string') return bad(`expected HOST:PORT, received ${e === null ? 'null' : typeof e}`);
    if (e === '') return bad(many ? 'empty (a stray comma?)' : 'expected HOST:PORT, e.g. 127.0.0.1:7070, received an empty value');
    if (e.length > MAX_MASTER_ADDRESS_CHARS) return bad(`${e.length} characters, at most ${MAX_MASTER_ADDRESS_CHARS}`);
    const m = HOST_PORT.exec(e);
    if (!m) return bad('expected HOST:PORT, e.g. 127.0.0.1:7070', echoValue(e));
    const port = Number(m[2] ?? m[4]);
    if (port < 1 || port > 65535) return bad(`port ${port} is not in 1-65535`, echoValue(e));
    const first = addresses.indexOf(e);
    if (first >= 0) return bad(`repeats entry ${first + 1}`, echoValue(e));
    addresses.push(e);
  }
  return { addresses };
}
