// Docker label keys on everything the runner creates, so that after a crash the worker can find
// and reap its own containers and volumes without touching anything else on the host.

export const LABEL_MANAGED = 'io.hivemind.managed';
export const LABEL_NODE_ID = 'io.hivemind.node-id';
export const LABEL_TASK_ID = 'io.hivemind.task-id';
export const LABEL_ATTEMPT = 'io.hivemind.attempt';

/** The labels of one task attempt's container and volumes. */
export function taskLabels(nodeId: string, taskId: string, attempt: number): Record<string, string> {
  return {
    [LABEL_MANAGED]: 'true',
    [LABEL_NODE_ID]: nodeId,
    [LABEL_TASK_ID]: taskId,
    [LABEL_ATTEMPT]: String(attempt),
  };
}

/** Docker `label=` filters selecting what this node manages (optionally one task). */
export function nodeLabelFilters(nodeId: string, taskId?: string): string[] {
  const filters = [`${LABEL_MANAGED}=true`, `${LABEL_NODE_ID}=${nodeId}`];
  if (taskId !== undefined) filters.push(`${LABEL_TASK_ID}=${taskId}`);
  return filters;
}

/**
 * Whether `labels` pass every `label=` filter ("key" or "key=value"), as Docker applies them (all
 * must hold). Podman 4's compat API ORs several label filters on volumes, so lists are checked again here.
 */
export function matchesLabelFilters(labels: Record<string, string>, filters: readonly string[]): boolean {
  return filters.every((f) => {
    const eq = f.indexOf('=');
    return eq < 0 ? f in labels : labels[f.slice(0, eq)] === f.slice(eq + 1);
  });
}
