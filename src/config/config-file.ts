// Reads the JSON config file. Every error names the file, the line and the fix: a syntax error
// shows the offending line, and later errors about a key (unknown, wrong type) find its line
// through keyLine().
import { readFileSync } from 'node:fs';
import { ConfigError, errorMessage } from '../common/errors.js';

export type ConfigFile = Record<string, unknown>;

export interface LoadedConfigFile {
  values: ConfigFile;
  /** The file as read, to point at a key's line in later errors. */
  text: string;
}

function lineAt(text: string, pos: number): { line: number; col: number; source: string } {
  const before = text.slice(0, pos);
  const start = before.lastIndexOf('\n') + 1;
  const end = text.indexOf('\n', pos);
  return { line: before.split('\n').length, col: pos - start + 1, source: text.slice(start, end < 0 ? undefined : end) };
}

export function readConfigFile(path: string): LoadedConfigFile {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`cannot read config file ${path}: ${errorMessage(err)}; pass an existing file to --config (or HIVEMIND_CONFIG), or none`);
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const msg = errorMessage(err).replace(/ in JSON at position \d+.*$/, '');
    const m = /position (\d+)/.exec(errorMessage(err));
    const fix = 'fix the JSON there (no comments, no trailing commas, keys in double quotes)';
    if (!m) throw new ConfigError(`config file ${path} is not valid JSON: ${msg}; ${fix}`);
    const at = lineAt(text, Number(m[1]));
    throw new ConfigError(`config file ${path} is not valid JSON at line ${at.line}, column ${at.col}: ${msg}\n  ${at.line} | ${at.source}\n  ${' '.repeat(String(at.line).length)} | ${' '.repeat(Math.max(0, at.col - 1))}^\n${fix}`);
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) {
    throw new ConfigError(`config file ${path} must hold a JSON object such as {"worker": {"maxTasks": 2}}`);
  }
  return { values: parsed as ConfigFile, text };
}

/** The 1-based line of `"key":` inside `"section"` of a config file's text, when it can be found. */
export function keyLine(text: string, section: string, key: string): number | undefined {
  const lines = text.split('\n');
  const quoted = (name: string) => new RegExp(`"${name.replace(/[\\^$.*+?()[\]{}|]/g, '\\$&')}"\\s*:`);
  const from = Math.max(0, lines.findIndex((l) => quoted(section).test(l)));
  for (let i = from; i < lines.length; i++) {
    const rest = i === from ? lines[i]!.slice(lines[i]!.search(quoted(section)) + section.length + 2) : lines[i]!;
    if (quoted(key).test(rest)) return i + 1;
  }
  return undefined;
}
