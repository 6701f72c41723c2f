// Whether this node hosts service replicas, and its gateway pipe: opened at start when services are
// on and the task runner can reach container ports, closed before replicas are stopped. A pipe that
// cannot open (its port in use, say) leaves the node running without services, as the monitor does
// without its port: batch tasks matter more than one feature, and the reason is logged and given to
// the master with each replica it would have sent.
import { errorMessage } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { TaskExecutor } from './contracts.js';
import type { GatewayPipeCounters, GatewayPipeServer } from './gateway-pipe-server.js';

const NO = 'this node does not host services';

export class NodeServices {
  /** Why replica assignments are refused; undefined once the gateway pipe listens. */
  private refusal: string | undefined = `${NO}: its gateway pipe is not open yet`;

  constructor(
    private readonly enabled: boolean,
    private readonly pipe: GatewayPipeServer | undefined,
    private readonly executor: Pick<TaskExecutor, 'servicesSupported'>,
    private readonly log: Logger,
  ) {}

  /** Why a replica assignment must be refused now, or undefined when this node takes replicas. */
  get refusalReason(): string | undefined {
    return this.refusal;
  }

  /** The pipe's port and counters while it listens; undefined when this node hosts no services. */
  get gateway(): { port: number; counters: GatewayPipeCounters } | undefined {
    const pipe = this.pipe;
    return pipe?.listening ? { port: pipe.port, counters: pipe.counters() } : undefined;
  }

  /** Opens the pipe when services are on and the runner supports them; never throws. */
  async open(): Promise<void> {
    if (!this.enabled) {
      this.refusal = NO;
      this.log.info('services are off (--no-services): no gateway pipe, replica assignments refused');
      return;
    }
    const pipe = this.pipe;
    if (!pipe) {
      this.refusal = `${NO}: its task runner cannot reach container ports`;
      return;
    }
    try {
      const support = this.executor.servicesSupported ? await this.executor.servicesSupported() : { ok: true };
      if (!support.ok) {
        this.refusal = `${NO}: ${support.reason ?? 'its task runner cannot run them here'}`;
        this.log.warn({ reason: support.reason }, 'services are off on this host');
        return;
      }
      await pipe.listen();
      this.refusal = undefined;
    } catch (err) {
      this.refusal = `${NO}: ${errorMessage(err)}`;
      this.log.error({ err: errorMessage(err) }, 'the gateway pipe did not open; the node runs without services');
    }
  }

  /** Idempotent: no new connection reaches a replica after this. */
  close(): Promise<void> | void {
    return this.pipe?.close();
  }
}
