// Docker's multiplexed log stream with timestamps, split into messages: each frame is an 8-byte
// header (stream 1 = stdout, 2 = stderr; 3 bytes of padding; big-endian payload length) and a
// payload that starts with the message's RFC 3339 time in ns and a space (`timestamps: true`).
// The time is what lets a restarted worker tell the output it already forwarded from the rest.

export interface LogMessage {
  stream: 'stdout' | 'stderr';
  data: Buffer;
  /** Docker's time of the message, in ns since the epoch. */
  atNs: bigint;
}

const HEADER = 8;

/** "2026-12-03T11:20:32.123456789Z" → ns since the epoch; undefined when it is not such a time. */
export function parseDockerTime(text: string): bigint | undefined {
  const m = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(text);
  if (!m) return undefined;
  const ms = Date.parse(`${m[1]}${m[3]}`);
  if (Number.isNaN(ms)) return undefined;
  return BigInt(ms) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

/** Docker's multiplexed stream (logs, or an exec's attach without a tty) split into its frames' payloads. */
export class StreamFrameDecoder {
  private pending: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (stream: 'stdout' | 'stderr', payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.pending = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (this.pending.length >= HEADER) {
      const size = this.pending.readUInt32BE(4);
      if (this.pending.length < HEADER + size) break;
      const kind = this.pending[0];
      const payload = this.pending.subarray(HEADER, HEADER + size);
      this.pending = this.pending.subarray(HEADER + size);
      // 0 is stdin echoed back, never sent with our options: dropped, as are empty frames.
      if (size > 0 && (kind === 1 || kind === 2)) this.onFrame(kind === 1 ? 'stdout' : 'stderr', payload);
    }
  }
}

/** Feeds raw log stream bytes in (timestamps on), calls `onMessage` for each complete frame. */
export class LogFrameDecoder {
  private readonly frames = new StreamFrameDecoder((stream, payload) => this.emit(stream, payload));
  /** The last time seen: a frame without a readable time gets it, so order is kept. */
  private lastNs = 0n;

  constructor(private readonly onMessage: (m: LogMessage) => void) {}

  push(chunk: Buffer): void {
    this.frames.push(chunk);
  }

  private emit(stream: 'stdout' | 'stderr', payload: Buffer): void {
    const space = payload.indexOf(0x20);
    const atNs = space > 0 ? parseDockerTime(payload.subarray(0, space).toString('latin1')) : undefined;
    if (atNs !== undefined) this.lastNs = atNs;
    const data = atNs !== undefined ? payload.subarray(space + 1) : payload;
    if (data.length > 0) this.onMessage({ stream, data: Buffer.from(data), atNs: this.lastNs });
  }
}
