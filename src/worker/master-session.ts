// One connection to the master as the worker sees it: alive until found broken, ready once
// subscribed; `lost` settles with the error that ended it.
import type { MasterConnection, ReportSink, SubscriptionHandle } from './master-connection.js';

export interface Session {
  conn: MasterConnection;
  /** False once the connection was found broken; nothing new uses it. */
  alive: boolean;
  /** Subscribed: the node is connected in the lifecycle sense. */
  ready: boolean;
  reportSink?: ReportSink;
  subscription?: SubscriptionHandle;
  lost: Promise<Error>;
  markLost(err: Error): void;
}

export function createSession(conn: MasterConnection): Session {
  let resolveLost!: (err: Error) => void;
  const lost = new Promise<Error>((resolve) => (resolveLost = resolve));
  const session: Session = {
    conn,
    alive: true,
    ready: false,
    lost,
    markLost: (err) => {
      session.alive = false;
      session.ready = false;
      resolveLost(err);
    },
  };
  return session;
}
