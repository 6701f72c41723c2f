// Cutting values a caller sent before they are echoed in an error message or a log line. A gRPC
// error travels in the answer's trailing metadata (8 KiB by default at the client): a 100 kB task
// id echoed whole would turn a NOT_FOUND into an unreadable "metadata too large" failure.

/** Characters of a caller's value kept when it is echoed. */
export const ECHO_MAX_CHARS = 64;

/**
 * `value` as is when short; otherwise its first ECHO_MAX_CHARS characters and the full size, e.g.
 * "aaaa…(100000 bytes)". Control characters are escaped so an echo cannot forge extra lines.
 */
export function echoValue(value: string, maxChars = ECHO_MAX_CHARS): string {
  const safe = (s: string) => s.replace(/[\u0000-\u001f\u007f]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, '0')}`);
  if (value.length <= maxChars) return safe(value);
  return `${safe(value.slice(0, maxChars))}…(${Buffer.byteLength(value)} bytes)`;
}

/** Cuts a whole message (the last line of defence in the gRPC error mapping). */
export function cutMessage(message: string, maxChars: number): string {
  if (message.length <= maxChars) return message;
  return `${message.slice(0, maxChars)}…(message cut, ${Buffer.byteLength(message)} bytes)`;
}
