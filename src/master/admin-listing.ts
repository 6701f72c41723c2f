// Paged admin listings (tasks, nodes): a page holds at most a count of items and stays under a
// byte budget, an item too large for a listing is summarised (long strings, lists and maps cut,
// marked), and the page token says where the next page starts. Pure: rows in, page out.
import { echoValue } from '../common/echo-value.js';
import { InvalidArgumentError } from './master-errors.js';

export const LIST_LIMITS = {
  /** Items per page when the request says 0. */
  defaultPageSize: 100,
  /** A larger `limit` is lowered to this. */
  maxPageSize: 1000,
  /** Encoded bytes of a page's items: a quarter of the 4 MiB message cap. */
  pageBytes: 1024 * 1024,
  /** An item encoding to more than this is summarised (see summarise). */
  itemBytes: 64 * 1024,
  /** Longest page token accepted (ours are ~40 characters). */
  maxPageTokenChars: 256,
  /** In a summarised item: characters kept of a string, entries kept of a list or map. */
  summaryStringChars: 256,
  summaryListItems: 32,
} as const;

/** Where a page ends: the sort key of its last item. */
export interface Cursor {
  at: number;
  id: string;
}

const CURSOR_ID = /^[A-Za-z0-9_-]{1,64}$/;

export function encodePageToken(c: Cursor): string {
  return Buffer.from(`${c.at}:${c.id}`).toString('base64url');
}

/** The cursor a page token names; undefined for the empty token (first page). */
export function decodePageToken(token: string): Cursor | undefined {
  if (token === '') return undefined;
  const bad = () => new InvalidArgumentError(`page_token "${echoValue(token)}" is not a token this master returned; pass next_page_token back unchanged, or nothing for the first page`);
  if (token.length > LIST_LIMITS.maxPageTokenChars || !/^[A-Za-z0-9_-]+$/.test(token)) throw bad();
  const m = /^(\d{1,16}):(.+)$/.exec(Buffer.from(token, 'base64url').toString('utf8'));
  if (!m || !CURSOR_ID.test(m[2]!)) throw bad();
  const at = Number(m[1]);
  if (!Number.isSafeInteger(at)) throw bad();
  return { at, id: m[2]! };
}

/** The page size a request's `limit` asks for: 0 = the default, capped at the maximum. */
export function pageSize(limit: number): number {
  if (!limit) return LIST_LIMITS.defaultPageSize;
  return Math.min(limit, LIST_LIMITS.maxPageSize);
}

/**
 * Validates a states filter: known values only, no UNSPECIFIED (0), each at most once (repeats of
 * a valid state are merged). More entries than there are states is refused before anything is
 * read, so a million-entry filter never reaches the database.
 */
export function validateStatesFilter<S extends number>(states: readonly S[], known: readonly S[], name: (s: S) => string): S[] {
  if (states.length > known.length) {
    throw new InvalidArgumentError(`states lists ${states.length} entries; at most ${known.length} (each state once)`);
  }
  const out = new Set<S>();
  for (const s of states) {
    if (!known.includes(s)) throw new InvalidArgumentError(`states: ${echoValue(String(s))} is not a task state (${known.map(name).join(', ')})`);
    out.add(s);
  }
  return [...out];
}

function cutString(s: string, max: number): string {
  return s.length <= max ? s : `${s.slice(0, max)}…(${Buffer.byteLength(s)} bytes)`;
}

/**
 * A copy of a decoded message with every string cut to `stringChars`, every list and map cut to
 * `listItems` entries (a list of strings or a map gets a "…(N more)" entry saying how many were
 * left out). Byte arrays and numbers are kept. Returns whether anything was cut.
 */
export function summarise<T>(value: T, stringChars: number = LIST_LIMITS.summaryStringChars, listItems: number = LIST_LIMITS.summaryListItems): { value: T; cut: boolean } {
  let cut = false;
  const walk = (v: unknown): unknown => {
    if (typeof v === 'string') {
      const s = cutString(v, stringChars);
      if (s !== v) cut = true;
      return s;
    }
    if (v === null || typeof v !== 'object' || v instanceof Uint8Array) return v;
    if (Array.isArray(v)) {
      const kept = v.slice(0, listItems).map(walk);
      if (v.length > listItems) {
        cut = true;
        if (v.every((x) => typeof x === 'string')) kept.push(`…(${v.length - listItems} more)`);
      }
      return kept;
    }
    if (v instanceof Map) {
      // Proto maps (env, labels) are Maps: cut to listItems entries, keeping every kind of key.
      const kept = new Map<unknown, unknown>();
      for (const [k, x] of [...v.entries()].slice(0, listItems)) kept.set(walk(k), walk(x));
      if (v.size > listItems) {
        cut = true;
        kept.set('…', `(${v.size - listItems} more)`);
      }
      return kept;
    }
    const entries = Object.entries(v as Record<string, unknown>);
    // Messages have fewer fields than this, so a message's fields are never cut here.
    const out: Record<string, unknown> = {};
    for (const [k, x] of entries.slice(0, listItems)) out[walk(k) as string] = walk(x);
    if (entries.length > listItems) {
      cut = true;
      out['…'] = `(${entries.length - listItems} more)`;
    }
    return out;
  };
  const out = walk(value) as T;
  return { value: out, cut };
}

export interface PageOptions<R, I> {
  /** Items wanted (already through pageSize). */
  limit: number;
  toItem: (row: R) => I;
  /** Encoded size of an item in bytes. */
  sizeOf: (item: I) => number;
  /** The summary of an item too large for a listing, flagged as truncated. */
  summary: (item: I) => I;
  cursorOf: (row: R) => Cursor;
  pageBytes?: number;
  itemBytes?: number;
}

/** The first `n` rows of a lazy listing; the rest is never read (leaving the loop closes the iterator). */
export function firstOf<R>(rows: Iterable<R>, n: number): R[] {
  const out: R[] = [];
  if (n <= 0) return out;
  for (const r of rows) {
    out.push(r);
    if (out.length >= n) break;
  }
  return out;
}

/**
 * Takes rows (lazily: a database iterator is read no further than needed) into a page of at most
 * `limit` items and `pageBytes` encoded bytes. A page always holds at least one item when there is
 * one, so a listing never gets stuck; next is empty when no row is left.
 */
export function takePage<R, I>(rows: Iterable<R>, o: PageOptions<R, I>): { items: I[]; next: string } {
  const pageBytes = o.pageBytes ?? LIST_LIMITS.pageBytes;
  const itemBytes = o.itemBytes ?? LIST_LIMITS.itemBytes;
  const items: I[] = [];
  let bytes = 0;
  let last: R | undefined;
  let next = '';
  for (const row of rows) {
    if (items.length >= o.limit) {
      next = encodePageToken(o.cursorOf(last!));
      break;
    }
    let item = o.toItem(row);
    let size = o.sizeOf(item);
    if (size > itemBytes) {
      item = o.summary(item);
      size = o.sizeOf(item);
    }
    // A repeated field's entry costs its length prefix and tag too.
    size += 8;
    if (items.length > 0 && bytes + size > pageBytes) {
      next = encodePageToken(o.cursorOf(last!));
      break;
    }
    items.push(item);
    bytes += size;
    last = row;
  }
  return { items, next };
}
