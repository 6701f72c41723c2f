// A bounded buffer keeping the END of a log: the last lines are the ones that explain a failure.

export class LogTail {
  private chunks: Buffer[] = [];
  private size = 0;
  private dropped = 0;

  constructor(readonly maxBytes: number) {
    if (!Number.isInteger(maxBytes) || maxBytes <= 0) throw new RangeError(`LogTail maxBytes must be a positive integer, got ${maxBytes}`);
  }

  push(data: Buffer): void {
    if (data.length === 0) return;
    if (data.length >= this.maxBytes) {
      // One chunk alone fills the tail: keep only its end.
      this.dropped += this.size + data.length - this.maxBytes;
      this.chunks = [Buffer.from(data.subarray(data.length - this.maxBytes))];
      this.size = this.maxBytes;
      return;
    }
    this.chunks.push(Buffer.from(data));
    this.size += data.length;
    while (this.size > this.maxBytes) {
      const first = this.chunks[0]!;
      const excess = this.size - this.maxBytes;
      if (first.length <= excess) {
        this.chunks.shift();
        this.size -= first.length;
        this.dropped += first.length;
      } else {
        this.chunks[0] = first.subarray(excess);
        this.size -= excess;
        this.dropped += excess;
      }
    }
  }

  /** Starts again from these chunks, in order (the engine's log, when the live stream missed frames before its last). */
  replaceWith(chunks: readonly Buffer[]): void {
    let from = chunks.length;
    let bytes = 0;
    while (from > 0 && bytes < this.maxBytes) bytes += chunks[--from]!.length;
    this.chunks = [];
    this.size = 0;
    this.dropped = 0;
    for (let i = 0; i < from; i++) this.dropped += chunks[i]!.length;
    for (let i = from; i < chunks.length; i++) this.push(chunks[i]!);
  }

  /** Bytes dropped from the start so far. */
  get droppedBytes(): number {
    return this.dropped;
  }

  get byteLength(): number {
    return this.size;
  }

  toBuffer(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }

  /**
   * The kept end as text. A cut may land inside a multi-byte character, so leading UTF-8
   * continuation bytes are skipped rather than shown as replacement characters.
   */
  toString(): string {
    const buf = this.toBuffer();
    let start = 0;
    if (this.dropped > 0) {
      while (start < buf.length && start < 3 && (buf[start]! & 0xc0) === 0x80) start++;
    }
    return buf.subarray(start).toString('utf8');
  }
}
