// What a log follower saw live of one stream: the time and a hash of each frame, the latest
// MAX_RECORDS of them. At the container's end they are matched, in order, against the log the
// engine still holds, to find what the live stream missed. Time alone cannot tell: Podman 4's
// compat API stamps frames to the second (hundreds of lines share a time), and under load its
// follow stream drops frames in the middle, not only at the end.

/** Frames remembered per stream (12 bytes each). Older ones are assumed delivered. */
export const MAX_RECORDS = 65_536;

/** FNV-1a, 32 bits: enough to tell apart frames of the same time, matched in order. */
export function frameHash(data: Uint8Array): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < data.length; i++) h = Math.imul(h ^ data[i]!, 0x01000193);
  return h >>> 0;
}

export class LiveFrames {
  private at = new BigInt64Array(64);
  private hash = new Uint32Array(64);
  /** Index of the oldest record in the ring, and how many there are. */
  private head = 0;
  private count = 0;
  /** Whether older records were dropped: frames of the oldest time kept may be among them. */
  private wrapped = false;

  get size(): number {
    return this.count;
  }

  /** The latest time seen (0n: none). */
  get latestNs(): bigint {
    return this.count === 0 ? 0n : this.at[(this.head + this.count - 1) % this.at.length]!;
  }

  /** The time of the oldest frame remembered (0n: none). */
  get oldestNs(): bigint {
    return this.count === 0 ? 0n : this.at[this.head]!;
  }

  add(atNs: bigint, data: Uint8Array): void {
    if (this.count === this.at.length && this.at.length < MAX_RECORDS) this.grow();
    const cap = this.at.length;
    const i = (this.head + this.count) % cap;
    this.at[i] = atNs;
    this.hash[i] = frameHash(data);
    if (this.count < cap) this.count++;
    else {
      this.head = (this.head + 1) % cap;
      this.wrapped = true;
    }
  }

  /**
   * A matcher over the engine's frames of this stream, fed in log order: true for a frame seen
   * live (the next remembered one, same time and hash), false for one the live stream missed.
   * Frames older than the oldest remembered count as seen; so do those of its time once older
   * records were dropped (some of that time may have been among them: better not sent twice).
   */
  matcher(): (atNs: bigint, data: Uint8Array) => boolean {
    let p = 0;
    const cap = this.at.length;
    const oldest = this.oldestNs;
    const none = this.count === 0;
    if (this.wrapped) while (p < this.count && this.at[(this.head + p) % cap] === oldest) p++;
    return (atNs, data) => {
      if (!none && (atNs < oldest || (this.wrapped && atNs === oldest))) return true;
      // Remembered frames the engine no longer shows (its log rotated) are passed over.
      while (p < this.count && this.at[(this.head + p) % cap]! < atNs) p++;
      if (p < this.count && this.at[(this.head + p) % cap] === atNs && this.hash[(this.head + p) % cap] === frameHash(data)) {
        p++;
        return true;
      }
      return false;
    };
  }

  private grow(): void {
    const n = Math.min(MAX_RECORDS, this.at.length * 2);
    const at = new BigInt64Array(n);
    const hash = new Uint32Array(n);
    for (let i = 0; i < this.count; i++) {
      const j = (this.head + i) % this.at.length;
      at[i] = this.at[j]!;
      hash[i] = this.hash[j]!;
    }
    this.at = at;
    this.hash = hash;
    this.head = 0;
  }
}
