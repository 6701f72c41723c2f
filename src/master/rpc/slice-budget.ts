// How many of the RPC thread's frames the main thread handles in one slice (rpc-thread-link.ts).
//
// A slice's clock sees only the synchronous part of each frame's handling. A handler's
// continuations, the microtasks its awaits leave (a submission stored once its last message is in,
// an upload finished, a log chunk appended), run after the slice in the same turn of the loop,
// outside that clock. Measured at 10,000 nodes: 16 submissions handled in an 18 ms slice left
// ~35 ms of continuations behind it. So what a slice costs is taken from its start to the next
// check phase of the loop, and the next slice takes no more frames than that cost per frame fits
// in the slice's time. A frame that is cheap again lets the count grow back, a little at a time.

/** How fast the estimate falls back when frames get cheaper (the weight of the newest slice). */
const EASE = 0.3;

export class SliceBudget {
  /** What one frame has cost with its continuations, ms (0: nothing measured yet). */
  private perFrameMs = 0;

  constructor(private readonly sliceMs: number) {}

  /** The most frames the next slice may take: at least one, however costly frames are. */
  maxFrames(): number {
    if (this.perFrameMs <= 0) return Number.POSITIVE_INFINITY;
    return Math.max(1, Math.floor(this.sliceMs / this.perFrameMs));
  }

  /** A slice took `frames` frames, and it and what they left to run took `totalMs`. */
  observe(frames: number, totalMs: number): void {
    if (frames <= 0 || !(totalMs >= 0)) return;
    const cost = totalMs / frames;
    // Up at once (the next slice must not repeat a long turn), down gradually.
    this.perFrameMs = cost >= this.perFrameMs ? cost : this.perFrameMs * (1 - EASE) + cost * EASE;
  }
}
