// Writes the runner's image pulls and uses into the worker's store, for the image GC. A store
// failure is logged, never thrown: it must not fail the task that pulled or used the image.
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import { errorMessage } from '../common/errors.js';
import type { ImageUseRecorder } from './docker-task-runner.js';

export interface ImageUseStore {
  recordImagePulled(image: string, at: number): void;
  recordImageUsed(image: string, at: number): boolean;
}

export function imageUseLog(store: ImageUseStore, clock: Clock, logger: Logger): ImageUseRecorder {
  const record = (what: 'pulled' | 'used', image: string, write: () => void): void => {
    try {
      write();
    } catch (err) {
      // An unrecorded pull is never pruned (safe); an unrecorded use may prune an image early,
      // which the next task using it pulls again.
      logger.warn({ image, err: errorMessage(err) }, `recording that an image was ${what} failed`);
    }
  };
  return {
    pulled: (image) => record('pulled', image, () => store.recordImagePulled(image, clock.now())),
    used: (image) => record('used', image, () => void store.recordImageUsed(image, clock.now())),
  };
}
