// The service manager's records (ServiceRecords) in memory, for its unit tests: services by name
// and the replica tasks the tests put in `tasks` and move through their states.
import type { ServiceRecords } from '../../src/master/service-manager.js';
import type { ServiceRow } from '../../src/master/service-store.js';
import type { TaskRow } from '../../src/master/store-rows.js';

export class FakeServiceRecords implements ServiceRecords {
  readonly rows = new Map<string, ServiceRow>();
  readonly tasks: TaskRow[] = [];
  insertService(s: ServiceRow): boolean {
    if (this.rows.has(s.name)) return false;
    this.rows.set(s.name, structuredClone(s));
    return true;
  }
  getService(name: string): ServiceRow | undefined {
    const r = this.rows.get(name);
    return r && { ...r };
  }
  serviceCount(): number {
    return this.rows.size;
  }
  serviceNames(): string[] {
    return [...this.rows.keys()].sort();
  }
  setReplicas(name: string, replicas: number): void {
    this.rows.get(name)!.replicas = replicas;
  }
  markRemoving(name: string): void {
    this.rows.get(name)!.removing = true;
  }
  deleteService(name: string): void {
    this.rows.delete(name);
  }
  replicaTasks(name: string): TaskRow[] {
    return this.tasks.filter((t) => t.spec.service?.service === name);
  }
}
