// Hand-written fakes of the exec ports: a command (ExecProcess) the test ends by hand, and the
// master's end of an ExecSession stream (ExecChannel) that records what the node sent.
import type { ExecOutputSink, ExecProcess, TerminalDims } from '../../src/runtime/exec-process.js';
import type { ExecChannel } from '../../src/worker/master-connection.js';
import type { ExecInput } from '../../src/protocol/gen/hivemind/v1/common.js';
import type { ExecNodeMessage } from '../../src/protocol/gen/hivemind/v1/node.js';

export class FakeExecProcess implements ExecProcess {
  readonly stdin: Buffer[] = [];
  readonly sizes: TerminalDims[] = [];
  stdinClosed = false;
  killed = false;
  paused = false;
  sink: ExecOutputSink | undefined;
  readonly exitCode: Promise<number>;
  private exit!: (code: number) => void;
  constructor() {
    this.exitCode = new Promise((r) => (this.exit = r));
  }
  readOutput(sink: ExecOutputSink): void {
    this.sink = sink;
  }
  pause(): void {
    this.paused = true;
  }
  resume(): void {
    this.paused = false;
  }
  async writeStdin(data: Buffer): Promise<void> {
    this.stdin.push(data);
  }
  closeStdin(): void {
    this.stdinClosed = true;
  }
  async resize(size: TerminalDims): Promise<void> {
    this.sizes.push(size);
  }
  async kill(): Promise<void> {
    this.killed = true;
    this.exit(137);
  }
  /** The command writes to its output. */
  say(stream: 'stdout' | 'stderr', text: string | Buffer): void {
    this.sink?.output(stream, Buffer.isBuffer(text) ? text : Buffer.from(text));
  }
  /** The command exits by itself. */
  finish(code: number): void {
    this.exit(code);
  }
}

export class FakeExecChannel implements ExecChannel {
  readonly sent: ExecNodeMessage[] = [];
  ended = false;
  cancelled = false;
  /** write() answers false while this is set (a full stream). */
  full = false;
  private drain: (() => void)[] = [];
  private onInput: ((i: ExecInput) => void) | undefined;
  private onEnd: ((err?: Error) => void) | undefined;
  readonly closed: Promise<void>;
  private close!: () => void;
  constructor() {
    this.closed = new Promise((r) => (this.close = r));
  }
  write(m: ExecNodeMessage): boolean {
    this.sent.push(m);
    return !this.full;
  }
  onDrain(listener: () => void): void {
    this.drain.push(listener);
  }
  /** The stream took what it held. */
  drained(): void {
    this.full = false;
    for (const l of this.drain.splice(0)) l();
  }
  listen(onInput: (i: ExecInput) => void, onEnd: (err?: Error) => void): void {
    this.onInput = onInput;
    this.onEnd = onEnd;
  }
  pause(): void {}
  resume(): void {}
  end(): void {
    this.ended = true;
    this.close();
  }
  cancel(): void {
    this.cancelled = true;
    this.close();
  }
  /** The master relays a message of the client's. */
  input(i: ExecInput['input']): void {
    this.onInput?.({ input: i });
  }
  /** The master's stream ends (its client went away). */
  masterGone(err?: Error): void {
    this.onEnd?.(err);
  }
  text(kind: 'stdout' | 'stderr'): string {
    return this.sent.map((m) => (m.message?.$case === 'output' && m.message.value.output?.$case === kind ? Buffer.from(m.message.value.output.value).toString() : '')).join('');
  }
  outputChunks(): number[] {
    return this.sent.flatMap((m) => (m.message?.$case === 'output' && (m.message.value.output?.$case === 'stdout' || m.message.value.output?.$case === 'stderr') ? [m.message.value.output.value.length] : []));
  }
  exit(): { code: number; error: string } | undefined {
    const last = this.sent.at(-1);
    return last?.message?.$case === 'output' && last.message.value.output?.$case === 'exit' ? last.message.value.output.value : undefined;
  }
  attached(): string | undefined {
    const first = this.sent[0];
    return first?.message?.$case === 'attach' ? first.message.value.sessionId : undefined;
  }
}
