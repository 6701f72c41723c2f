// Reaps what a node left in Docker that no live task owns (after a crash or a lost cleanup):
// its labelled containers, volumes and /output filesystems, and nothing else.
import type { ContainerEngine } from './container-engine.js';
import { LABEL_TASK_ID, nodeLabelFilters } from './labels.js';
import type { OutputVolumes } from './output-volume.js';

export interface ReapResult {
  containers: string[];
  volumes: string[];
  /** /output filesystems freed (by volume name). */
  outputFs?: string[];
}

/**
 * Removes containers and volumes labelled with this node whose task `keep` does not hold. `keep` is
 * asked at removal time, so a task that starts while this runs is never touched. Only objects
 * carrying our managed + node-id labels are listed, so nothing else is touched.
 */
export async function reapOrphans(engine: ContainerEngine, nodeId: string, keep: { has(taskId: string): boolean }, signal?: AbortSignal, outputs?: OutputVolumes): Promise<ReapResult> {
  const filters = nodeLabelFilters(nodeId);
  const removed: ReapResult = { containers: [], volumes: [] };
  for (const c of await engine.listContainers(filters, signal)) {
    const taskId = c.labels[LABEL_TASK_ID];
    if (taskId !== undefined && keep.has(taskId)) continue;
    await engine.removeContainer(c.id, signal);
    removed.containers.push(c.names[0] ?? c.id);
  }
  for (const v of await engine.listVolumes(filters, signal)) {
    const taskId = v.labels[LABEL_TASK_ID];
    if (taskId !== undefined && keep.has(taskId)) continue;
    await engine.removeVolume(v.name, signal);
    removed.volumes.push(v.name);
  }
  if (outputs) {
    // Images are named after their volume; one whose task is not kept has no volume left (above).
    removed.outputFs = [];
    const live = new Set((await engine.listVolumes(filters, signal)).map((v) => v.name));
    for (const name of await outputs.list()) {
      const taskId = outputVolumeTaskId(name);
      if (live.has(name) || (taskId !== undefined && keep.has(taskId))) continue;
      await outputs.release(name);
      removed.outputFs.push(name);
    }
  }
  return removed;
}

/** The task id in an output volume's name (`hivemind-<taskId>-<attempt>-output`). */
function outputVolumeTaskId(name: string): string | undefined {
  return /^hivemind-(.+)-\d+-output$/.exec(name)?.[1];
}
