import { LRUCache } from 'lru-cache';
import type { Allowlist } from '../admission/policy.js';
import type { ImageReference } from '../reference.js';
import type { ImageSql } from './image-sql.js';
import type { LiveIndex } from './live-index.js';

/** Admission lookups straight against the table: by primary key, or by the name index and tag. */
export class DatabaseAllowlist implements Allowlist {
  constructor(private readonly images: ImageSql) {}

  allows(ref: ImageReference): Promise<boolean> {
    return ref.digest ? this.images.allowsDigest(ref.digest) : this.images.allowsNameTag(ref.name, ref.tag!);
  }
}

const VERDICT_CACHE_SIZE = 10_000;

/**
 * Admission lookups from the live index when it may answer (live-index.ts), else from the database.
 * Verdicts from memory are remembered until the index changes at all (its generation), since
 * every pod of a rollout asks about the same images.
 */
export class IndexedAllowlist implements Allowlist {
  /** By parsed reference: the policy hands over the same object for the same image string. */
  private readonly verdicts = new LRUCache<ImageReference, boolean>({ max: VERDICT_CACHE_SIZE });
  private generation = -1;

  constructor(
    private readonly live: LiveIndex,
    private readonly fallback: Allowlist,
  ) {}

  /** A boolean from memory; the database's promise otherwise. */
  allows(ref: ImageReference): boolean | Promise<boolean> {
    return this.live.read(
      (index) => {
        if (this.generation !== index.generation) {
          this.verdicts.clear();
          this.generation = index.generation;
        }
        let verdict = this.verdicts.get(ref);
        if (verdict === undefined) {
          verdict = index.allows(ref);
          this.verdicts.set(ref, verdict);
        }
        return verdict;
      },
      async () => this.fallback.allows(ref),
    );
  }
}
