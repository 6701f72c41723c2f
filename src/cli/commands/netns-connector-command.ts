// `hivemind __netns-connector` (hidden): the standalone executable's way of running the connector
// child that reaches a service replica's port inside its container (runtime/netns-connector.ts).
import type { Command } from 'commander';
import { CONNECTOR_SUBCOMMAND } from '../../runtime/netns-connector.js';
import { NO_CHANNEL_MESSAGE, serveConnector } from '../../runtime/netns-connector-child.js';

export function registerNetnsConnectorCommand(program: Command): void {
  program
    .command(CONNECTOR_SUBCOMMAND, { hidden: true })
    .description('internal: started by the worker inside a replica container\'s network namespace')
    .action(
      () =>
        // Stays until the worker closes the IPC channel (serveConnector exits then).
        new Promise<void>((_resolve, reject) => {
          if (!serveConnector()) reject(new Error(NO_CHANNEL_MESSAGE));
        }),
    );
}
