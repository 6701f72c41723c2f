// Relays one attached exec session both ways: the client's stdin and resizes to the node, the
// command's output and exit to the client. Each direction pauses its reader while the other side's
// write() says its buffer is full, so a slow reader holds a bounded amount in the master.
import type { ServerDuplexStream } from '@grpc/grpc-js';
import { errorMessage } from '../common/errors.js';
import { toServiceError } from '../protocol/grpc-errors.js';
import type { ExecInput, ExecOutput, ExecStart } from '../protocol/gen/hivemind/v1/common.js';
import type { ExecNodeMessage } from '../protocol/gen/hivemind/v1/node.js';
import { EXEC_CUT_EXIT_CODE, validateExecInput } from './exec-rules.js';
import { InvalidArgumentError } from './master-errors.js';

export type ClientExecStream = ServerDuplexStream<ExecInput, ExecOutput>;
export type NodeExecStream = ServerDuplexStream<ExecNodeMessage, ExecInput>;

export interface RelayOutcome {
  /** The command's exit code, or EXEC_CUT_EXIT_CODE when the session was cut. */
  code: number;
  /** Why the command could not run (the node's), or why the session was cut. */
  error: string;
  /** Who cut it: the client went away or broke a rule, the node was lost or broke one, the master closed. */
  cut?: 'client' | 'node' | 'master';
  /** What the node sent that it must not (for the hostile log). */
  hostileNode?: string;
}

export interface ExecRelay {
  done: Promise<RelayOutcome>;
  /** Ends the session from the master's side (shutdown): the client gets exit 255 with `why`. */
  stop(why: string): void;
}

/** Writes with backpressure: pauses `source` until `sink` drains. */
function forward<T>(sink: { write(m: T): boolean; once(e: 'drain', f: () => void): unknown }, source: { pause(): unknown; resume(): unknown }, m: T): void {
  if (!sink.write(m)) {
    source.pause();
    sink.once('drain', () => source.resume());
  }
}

function quietly(fn: () => void): void {
  try {
    fn();
  } catch {
    // the call is gone already
  }
}

export function relayExec(client: ClientExecStream, node: NodeExecStream, start: Pick<ExecStart, 'tty' | 'stdin'>, nodeLabel: string): ExecRelay {
  let finish!: (o: RelayOutcome) => void;
  let finished = false;
  const done = new Promise<RelayOutcome>((resolve) => {
    finish = (o) => {
      if (finished) return;
      finished = true;
      client.off('data', onClientData);
      node.off('data', onNodeData);
      resolve(o);
    };
  });

  const cutToClient = (error: string, cut: RelayOutcome['cut'], hostileNode?: string) => {
    if (finished) return;
    quietly(() => {
      client.write({ output: { $case: 'exit', value: { code: EXEC_CUT_EXIT_CODE, error } } });
      client.end();
    });
    finish({ code: EXEC_CUT_EXIT_CODE, error, cut, ...(hostileNode ? { hostileNode } : {}) });
  };

  const onClientData = (m: ExecInput) => {
    try {
      validateExecInput(m, start);
    } catch (err) {
      // The command is killed with the session: the node's stream ends, the client learns why.
      quietly(() => node.end());
      quietly(() => client.emit('error', toServiceError(err)));
      finish({ code: EXEC_CUT_EXIT_CODE, error: errorMessage(err), cut: 'client' });
      return;
    }
    forward(node, client, m);
  };
  const clientGone = () => {
    if (finished) return;
    // Ending the node's stream is how the node learns to kill the command.
    quietly(() => node.end());
    finish({ code: EXEC_CUT_EXIT_CODE, error: 'the client went away', cut: 'client' });
  };

  const onNodeData = (m: ExecNodeMessage) => {
    const out = m.message?.$case === 'output' ? m.message.value.output : undefined;
    if (!out || out.$case === 'started') {
      const what = m.message?.$case === 'attach' ? 'a second attach' : out ? 'a started message (the master\'s)' : 'an empty message';
      // The client is told first: the node's stream erroring would otherwise read as a lost node.
      cutToClient(`the node ${nodeLabel} broke the exec protocol (${what}); session ended`, 'node', what);
      quietly(() => node.emit('error', toServiceError(new InvalidArgumentError(`exec session: ${what} from the node; only output and exit follow the attach`))));
      return;
    }
    if (out.$case === 'exit') {
      quietly(() => {
        client.write({ output: out });
        client.end();
      });
      quietly(() => node.end());
      finish({ code: out.value.code, error: out.value.error });
      return;
    }
    forward(client, node, { output: out } satisfies ExecOutput);
  };
  const nodeLost = (why: string) => () => cutToClient(`lost the node ${nodeLabel}: ${why}`, 'node');

  client.on('data', onClientData);
  client.once('cancelled', clientGone);
  client.once('error', clientGone);
  // A half-close only says no more input comes; the session lasts until the command exits.
  client.on('end', () => undefined);
  node.on('data', onNodeData);
  node.once('end', nodeLost('it ended the session without an exit code'));
  node.once('cancelled', nodeLost('its connection closed'));
  node.once('error', nodeLost('its connection failed'));
  client.resume();
  node.resume();

  return {
    done,
    stop: (why) => {
      quietly(() => node.end());
      cutToClient(why, 'master');
    },
  };
}
