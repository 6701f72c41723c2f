// The one place a standby master refuses gRPC: a server interceptor given to every server of the
// master (node, admin, data, enroll). While the master is not active every call ends with
// UNAVAILABLE and "standby master: <holder> is active" before any handler runs, so nodes and the
// CLI move on to the next master address (the message prefix is the contract with them).
import { Metadata, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';

/** The prefix clients look for. */
export const STANDBY_MESSAGE_PREFIX = 'standby master';

export interface ServingState {
  /** True once this master holds the lease and has loaded its state; false again once it lost it. */
  serving(): boolean;
  /** Who holds the lease, for the message. */
  activeHolder(): string;
}

export function standbyMessage(holder: string): string {
  return `${STANDBY_MESSAGE_PREFIX}: ${holder} is active`;
}

export function standbyGuard(state: ServingState): ServerInterceptor {
  return (_descriptor, call) => {
    if (state.serving()) return new ServerInterceptingCall(call);
    let refused = false;
    const refuse = () => {
      if (refused) return;
      refused = true;
      call.sendStatus({ code: Status.UNAVAILABLE, details: standbyMessage(state.activeHolder()), metadata: new Metadata() });
    };
    return new ServerInterceptingCall(call, {
      // The handler is never reached: no message is passed on, the call ends as it starts.
      start: (next) => {
        next({ onReceiveMetadata: () => refuse(), onReceiveMessage: () => undefined, onReceiveHalfClose: () => refuse(), onCancel: () => undefined });
      },
    });
  };
}
