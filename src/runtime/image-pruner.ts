// Image garbage collection: removes images this worker pulled and no task used for a while,
// least recently used first, until this worker's images fit a disk budget. Nothing else on the
// Docker host is touched: not the operator's images, not images another tag (of another agent
// sharing the daemon) still names, not images a container still needs, never a forced removal.
import { AbortedError, ImageInUseError, errorMessage } from '../common/errors.js';
import type { Clock } from '../common/clock.js';
import type { Logger } from '../common/logger.js';
import type { PulledImageRecord } from '../worker/contracts.js';
import type { ContainerEngine, ImageInfo } from './container-engine.js';
import { familiarTag } from './image-reference.js';

/** What the pruner reads and updates in the worker's store. */
export interface PulledImagesView {
  /** The images this worker pulled, with their last use. */
  pulledImages(): PulledImageRecord[];
  /** The images named by tasks that are not finished (running, uploading, just assigned). */
  unfinishedTaskImages(): string[];
  forgetImage(image: string): void;
}

export type ImagePruneEngine = Pick<ContainerEngine, 'inspectImage' | 'removeImage'>;

export interface ImagePrunerOptions {
  /** This worker's pulled images are pruned down to this many bytes. */
  budgetBytes: number;
  /** Only images no task used for at least this long are candidates. */
  unusedForMs: number;
}

export interface PrunedImage {
  id: string;
  /** The references this worker pulled it by, all removed. */
  references: string[];
  sizeBytes: number;
  lastUsedAt: number;
}

export interface PruneResult {
  removed: PrunedImage[];
  /** Bytes of the removed images. Layers they shared with kept images stay on disk. */
  freedBytes: number;
  /** Bytes of this worker's pulled images still present afterwards. */
  keptBytes: number;
}

/** The images one image id stands for: the records that resolve to it. */
interface OwnedImage {
  info: ImageInfo;
  records: PulledImageRecord[];
  lastUsedAt: number;
  /** Another tag names it too: it is not only this worker's to remove. */
  shared: boolean;
}

export class ImagePruner {
  constructor(
    private readonly engine: ImagePruneEngine,
    private readonly store: PulledImagesView,
    private readonly clock: Clock,
    private readonly options: ImagePrunerOptions,
    private readonly logger: Logger,
  ) {}

  async prune(signal?: AbortSignal): Promise<PruneResult> {
    const images = await this.ownedImages(signal);
    let keptBytes = 0;
    for (const img of images) if (!img.shared) keptBytes += img.info.sizeBytes;
    const result: PruneResult = { removed: [], freedBytes: 0, keptBytes };
    if (keptBytes <= this.options.budgetBytes) return result;

    let inUse = await this.imageIdsInUse(signal);
    const candidates = images
      .filter((img) => !img.shared && !inUse.has(img.info.id) && this.unusedLongEnough(img.lastUsedAt))
      .sort((a, b) => a.lastUsedAt - b.lastUsedAt || a.info.id.localeCompare(b.info.id));
    for (const img of candidates) {
      if (result.keptBytes <= this.options.budgetBytes) break;
      // A task may have been given this image since the list was made: look again just before.
      inUse = await this.imageIdsInUse(signal);
      if (inUse.has(img.info.id) || this.usedSince(img)) continue;
      if (!(await this.remove(img, signal))) continue;
      result.removed.push({ id: img.info.id, references: img.records.map((r) => r.image), sizeBytes: img.info.sizeBytes, lastUsedAt: img.lastUsedAt });
      result.freedBytes += img.info.sizeBytes;
      result.keptBytes -= img.info.sizeBytes;
    }
    if (result.keptBytes > this.options.budgetBytes) {
      this.logger.warn(
        { keptBytes: result.keptBytes, budgetBytes: this.options.budgetBytes, unusedForMs: this.options.unusedForMs },
        'pulled images are over the image budget; the rest are in use or were used recently',
      );
    }
    return result;
  }

  /** This worker's pulled images by image id; records of images that are gone are dropped. */
  private async ownedImages(signal: AbortSignal | undefined): Promise<OwnedImage[]> {
    const byId = new Map<string, OwnedImage>();
    for (const record of this.store.pulledImages()) {
      const info = await this.engine.inspectImage(record.image, signal);
      if (!info) {
        // Removed by someone else (e.g. `docker image prune`): nothing left to account for.
        this.store.forgetImage(record.image);
        this.logger.debug({ image: record.image }, 'a pulled image is gone; forgetting it');
        continue;
      }
      const img = byId.get(info.id) ?? { info, records: [], lastUsedAt: 0, shared: false };
      img.records.push(record);
      img.lastUsedAt = Math.max(img.lastUsedAt, record.lastUsedAt);
      byId.set(info.id, img);
    }
    for (const img of byId.values()) {
      const ours = new Set(img.records.map((r) => familiarTag(r.image)));
      img.shared = img.info.repoTags.some((tag) => !ours.has(tag));
      if (img.shared) this.logger.debug({ id: img.info.id, tags: img.info.repoTags }, 'a pulled image also has tags this worker did not pull; keeping it');
    }
    return [...byId.values()];
  }

  private async imageIdsInUse(signal: AbortSignal | undefined): Promise<Set<string>> {
    const ids = new Set<string>();
    for (const image of this.store.unfinishedTaskImages()) {
      const info = await this.engine.inspectImage(image, signal);
      if (info) ids.add(info.id);
    }
    return ids;
  }

  private unusedLongEnough(lastUsedAt: number): boolean {
    return this.clock.now() - lastUsedAt >= this.options.unusedForMs;
  }

  private usedSince(img: OwnedImage): boolean {
    const latest = new Map(this.store.pulledImages().map((r) => [r.image, r.lastUsedAt]));
    return img.records.some((r) => (latest.get(r.image) ?? r.lastUsedAt) > img.lastUsedAt);
  }

  /** Removes every reference this worker pulled the image by; false when the engine keeps it. */
  private async remove(img: OwnedImage, signal: AbortSignal | undefined): Promise<boolean> {
    for (const record of img.records) {
      try {
        await this.engine.removeImage(record.image, signal);
      } catch (err) {
        if (err instanceof AbortedError || signal?.aborted) throw err;
        if (err instanceof ImageInUseError) {
          this.logger.info({ image: record.image, id: img.info.id }, 'not removing a pulled image: a container still uses it');
        } else {
          this.logger.warn({ image: record.image, id: img.info.id, err: errorMessage(err) }, 'removing a pulled image failed; trying again at the next collection');
        }
        return false;
      }
      this.store.forgetImage(record.image);
    }
    this.logger.info({ images: img.records.map((r) => r.image), id: img.info.id, sizeBytes: img.info.sizeBytes, lastUsedAt: new Date(img.lastUsedAt).toISOString() }, 'removed an unused pulled image');
    return true;
  }
}
