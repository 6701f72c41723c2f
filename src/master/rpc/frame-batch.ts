// The frames one thread of the master queues for the other (rpc-thread.ts → main,
// rpc-thread-link.ts → thread), sent as one postMessage per turn of the loop. The calls' message
// bytes of a batch are copied into one buffer that moves with it: the other thread gets one
// ArrayBuffer per batch, not one per message. Each is a backing store its scavenges sweep: with one
// per message, 10,000 nodes enrolling gave the main thread a 77 ms scavenge, 69 ms of it
// sweeping them. The copy is needed anyway: a view of a pooled or shared buffer cannot be moved.

/** A frame that may carry a call's message bytes. */
interface Frame {
  t: string;
  bytes?: Uint8Array;
}

export class FrameBatch<F extends Frame> {
  private frames: F[] = [];
  private byteLength = 0;

  get length(): number {
    return this.frames.length;
  }

  /** Queues a frame; its bytes are read when the batch is taken, so they must not change before. */
  push(frame: F): void {
    this.frames.push(frame);
    if (frame.bytes) this.byteLength += frame.bytes.byteLength;
  }

  /** The queued frames with their bytes as views of one new buffer (the one to transfer), and an empty batch. */
  take(): { frames: F[]; transfer: ArrayBuffer[] } {
    const frames = this.frames;
    const total = this.byteLength;
    this.frames = [];
    this.byteLength = 0;
    if (total === 0) return { frames, transfer: [] };
    const buffer = new ArrayBuffer(total);
    let at = 0;
    for (const f of frames) {
      if (!f.bytes) continue;
      const view = new Uint8Array(buffer, at, f.bytes.byteLength);
      view.set(f.bytes);
      f.bytes = view;
      at += view.byteLength;
    }
    return { frames, transfer: [buffer] };
  }
}
