// Rewrites the stores' placeholders (`?` in order, or `@name` with one object argument) to
// PostgreSQL's $1..$n, skipping quoted strings and identifiers. Pure; compiled once per SQL text.

export interface CompiledSql {
  text: string;
  /** Names in $n order when the SQL uses `@name`; undefined for positional `?`. */
  names: readonly string[] | undefined;
}

export function compilePlaceholders(sql: string): CompiledSql {
  let out = '';
  let n = 0;
  const names: string[] = [];
  const byName = new Map<string, number>();
  for (let i = 0; i < sql.length; i++) {
    const c = sql[i]!;
    if (c === "'" || c === '"') {
      const end = sql.indexOf(c, i + 1);
      const stop = end < 0 ? sql.length : end + 1;
      out += sql.slice(i, stop);
      i = stop - 1;
    } else if (c === '?') {
      out += '$' + ++n;
    } else if (c === '@' && /[A-Za-z_]/.test(sql[i + 1] ?? '')) {
      const m = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i + 1))!;
      const name = m[0];
      let k = byName.get(name);
      if (k === undefined) {
        names.push(name);
        byName.set(name, (k = names.length));
      }
      out += '$' + k;
      i += name.length;
    } else {
      out += c;
    }
  }
  if (n > 0 && names.length > 0) throw new Error(`SQL mixes ? and @name placeholders: ${sql.slice(0, 60)}`);
  return { text: out, names: names.length > 0 ? names : undefined };
}

/** The positional values of `params` for `compiled` (an object is read by name). */
export function bindValues(compiled: CompiledSql, params: readonly unknown[]): unknown[] {
  const values = compiled.names ? compiled.names.map((k) => (params[0] as Record<string, unknown>)[k]) : [...params];
  // pg sends undefined as NULL already; booleans are stored as 0/1 like SQLite's (the stores' reads expect numbers).
  return values.map((v) => (v === undefined ? null : typeof v === 'boolean' ? (v ? 1 : 0) : v));
}
