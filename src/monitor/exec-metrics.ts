// Prometheus metrics of the exec sessions into this node's tasks (`hivemind exec`), read from the
// worker's counters at each scrape.
import { Counter, Gauge, type Registry } from 'prom-client';
import type { ExecCounters } from '../worker/exec-sessions.js';

export function registerExecMetrics(registry: Registry, counters: () => ExecCounters): void {
  const registers = [registry];
  // The worker keeps the totals; each scrape sets the counter to them (they never go down while it runs).
  const total = (name: string, help: string, pick: (c: ExecCounters) => number) =>
    new Counter({
      name,
      help,
      registers,
      collect() {
        this.reset();
        this.inc(pick(counters()));
      },
    });
  total('hivemind_worker_exec_sessions_started_total', 'Exec sessions whose command started on this node', (c) => c.started);
  total('hivemind_worker_exec_sessions_refused_total', 'Exec sessions refused (exec off, task not running, bounds, too many sessions)', (c) => c.refused);
  new Gauge({ name: 'hivemind_worker_exec_sessions_active', help: 'Exec sessions open now', registers, collect() { this.set(counters().active); } });
}
