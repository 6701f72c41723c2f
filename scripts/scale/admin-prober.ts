// bench:scale's admin caller, a process of its own: a page of nodes and a page of tasks every
// 5 s (2.5 s apart), each timed from request to answer. The simulator's process drives 10,000
// nodes and its event loop is as busy as the master's: an admin call timed there would measure
// that loop as much as the master. Controlled by lines on stdin ("on", "off"); each answer is a
// JSON line on stdout: {"kind":"nodes"|"tasks","ms":N} or {"kind":…,"error":"…"}.
import { createInterface } from 'node:readline';
import { AdminClient } from '../../src/client/admin-client.js';

const [address, token] = process.argv.slice(2);
if (!address || !token) {
  console.error('usage: admin-prober ADDRESS ADMIN_TOKEN');
  process.exit(2);
}
const admin = AdminClient.connect(address, token);
let on = false;

async function time(kind: 'nodes' | 'tasks', call: () => Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  try {
    await call();
    process.stdout.write(`${JSON.stringify({ kind, ms: performance.now() - t0 })}\n`);
  } catch (err) {
    process.stdout.write(`${JSON.stringify({ kind, error: err instanceof Error ? err.message : String(err) })}\n`);
  }
}

setInterval(() => {
  if (!on) return;
  void time('nodes', () => admin.listNodesPage({ limit: 100 }));
  setTimeout(() => void (on && time('tasks', () => admin.listTasksPage({ limit: 100 }))), 2500);
}, 5000);

createInterface({ input: process.stdin }).on('line', (line) => {
  if (line === 'on') on = true;
  else if (line === 'off') on = false;
}).on('close', () => process.exit(0));
