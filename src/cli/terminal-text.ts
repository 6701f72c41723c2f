// Makes text that came from elsewhere (a node's name, an outcome message, a server's error) safe to
// print on the operator's terminal: control characters are shown escaped instead of being obeyed,
// so a hostile node cannot set the window title, clear the screen, recolour or hide text.
import { stringifyProto } from '../protocol/proto-json.js';

// C0 controls, DEL, C1 controls (U+009B is a one-character CSI on many terminals), the Unicode
// bidirectional controls that reorder what is shown (U+061C, U+200E/F, U+202A–E, U+2066–9), and
// the line/paragraph separators that break a table row.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_KEEP_LINES = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

// What JSON.stringify leaves raw inside strings.
const JSON_RAW = /[\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

const NAMED: Readonly<Record<string, string>> = { '\n': '\\n', '\r': '\\r', '\t': '\\t' };

function escapeChar(c: string): string {
  const named = NAMED[c];
  if (named) return named;
  const code = c.charCodeAt(0);
  return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
}

/**
 * The text with every terminal control shown as an escape (`\x1b`, `\x07`, `\u202e`, `\n`).
 * `multiline` keeps newlines and tabs (for an error message of several lines); everything else,
 * including a carriage return that would let a line overwrite itself, is still escaped.
 */
export function terminalSafe(text: string, opts: { multiline?: boolean } = {}): string {
  return text.replace(opts.multiline ? UNSAFE_KEEP_LINES : UNSAFE, escapeChar);
}

/**
 * JSON for a terminal or a pipe: JSON.stringify already escapes U+0000–U+001F, but leaves DEL, the
 * C1 controls and the bidi controls raw. They are written as \uXXXX escapes: the same JSON value.
 */
export function terminalSafeJson(value: unknown): string {
  // Outside strings the output holds no such character, so each one sits in a string.
  return stringifyProto(value, 2).replace(JSON_RAW, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}
