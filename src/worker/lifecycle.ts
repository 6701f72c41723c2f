// The worker's lifecycle as an explicit state machine: every transition is checked against
// one table, logged and emitted, so that an impossible sequence fails loudly instead of
// leaving the worker half-connected.
import { EventEmitter } from 'node:events';
import { HivemindError } from '../common/errors.js';
import type { Logger } from '../common/logger.js';
import type { LifecycleChange, LifecycleState } from './contracts.js';

export type { LifecycleChange, LifecycleState };

export const LIFECYCLE_TRANSITIONS: Readonly<Record<LifecycleState, readonly LifecycleState[]>> = {
  starting: ['registering', 'draining', 'stopped'],
  // registering -> reconnecting: the master was unreachable at start; keep trying.
  registering: ['connected', 'reconnecting', 'draining', 'stopped'],
  connected: ['reconnecting', 'draining', 'stopped'],
  // reconnecting -> registering: a reconnect re-registers to refresh facts.
  reconnecting: ['registering', 'connected', 'draining', 'stopped'],
  draining: ['stopped'],
  stopped: [],
};

export class IllegalTransitionError extends HivemindError {
  readonly from: LifecycleState;
  readonly to: LifecycleState;
  constructor(from: LifecycleState, to: LifecycleState) {
    super('ILLEGAL_TRANSITION', `worker lifecycle: cannot go from '${from}' to '${to}' (allowed: ${LIFECYCLE_TRANSITIONS[from].join(', ') || 'none'})`);
    this.from = from;
    this.to = to;
  }
}

export function canTransition(from: LifecycleState, to: LifecycleState): boolean {
  return LIFECYCLE_TRANSITIONS[from].includes(to);
}

export class Lifecycle extends EventEmitter<{ change: [LifecycleChange] }> {
  private current: LifecycleState = 'starting';

  constructor(private readonly logger: Logger) {
    super();
  }

  get state(): LifecycleState {
    return this.current;
  }

  is(...states: LifecycleState[]): boolean {
    return states.includes(this.current);
  }

  /** Moves to `to` or throws IllegalTransitionError; the change is logged and emitted. */
  transition(to: LifecycleState, reason: string): void {
    const from = this.current;
    if (!canTransition(from, to)) throw new IllegalTransitionError(from, to);
    this.current = to;
    this.logger.info({ from, to, reason }, `worker ${from} -> ${to}`);
    this.emit('change', { from, to, reason });
  }
}
