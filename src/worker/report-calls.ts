// A node's resource reports as one SendReport call each (node.proto), instead of a Report stream
// held open for as long as the node is connected: at 10,000 nodes those streams were half of the
// master's live gRPC state and of its full GCs' pauses (issue 21). A master without SendReport
// (older) answers UNIMPLEMENTED: the sink then opens the Report stream and keeps to it, and the
// connection remembers not to try again. One call at a time: a report that comes while one is in
// flight waits, and only the newest waiting one is sent (a report replaces the one before it).
import { status } from '@grpc/grpc-js';
import type { ResourceReport } from '../protocol/gen/hivemind/v1/common.js';
import type { ReportSink } from './master-connection.js';

export interface ReportTransport {
  /** One SendReport call; `done` with its error, or undefined once the master acknowledged it. */
  sendOne(report: ResourceReport, done: (err: Error | undefined) => void): void;
  /** The Report stream, for a master that has no SendReport. */
  openStream(onError: (err: Error) => void): ReportSink;
  /** Told once when the master turns out to have no SendReport (the connection stops trying it). */
  onUnimplemented(): void;
}

export class ReportCalls implements ReportSink {
  private inFlight = false;
  private waiting: ResourceReport | undefined;
  private stream: ReportSink | undefined;
  private ended = false;

  constructor(
    private readonly transport: ReportTransport,
    /** Told once, of the first failed report (the session reconnects, as when the stream failed). */
    private readonly onError: (err: Error) => void,
  ) {}

  send(report: ResourceReport): void {
    if (this.ended) return;
    if (this.stream) return this.stream.send(report);
    if (this.inFlight) {
      this.waiting = report;
      return;
    }
    this.call(report);
  }

  close(): void {
    if (this.ended) return;
    this.ended = true;
    this.waiting = undefined;
    this.stream?.close();
  }

  private call(report: ResourceReport): void {
    this.inFlight = true;
    this.transport.sendOne(report, (err) => {
      this.inFlight = false;
      if (this.ended) return;
      if (err && (err as { code?: number }).code === status.UNIMPLEMENTED) {
        this.transport.onUnimplemented();
        this.stream = this.transport.openStream((e) => this.fail(e));
        this.stream.send(this.waiting ?? report);
        this.waiting = undefined;
        return;
      }
      if (err) return this.fail(err);
      const next = this.waiting;
      this.waiting = undefined;
      if (next) this.call(next);
    });
  }

  private fail(err: Error): void {
    if (this.ended) return;
    this.ended = true;
    this.waiting = undefined;
    this.onError(err);
  }
}
