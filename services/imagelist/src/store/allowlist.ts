import type { Allowlist } from '../admission/policy.js';
import { Memo } from '../memo.js';
import type { ImageReference } from '../reference.js';
import type { ImageIndex } from './image-index.js';
import type { ImageSql } from './image-sql.js';
import type { LiveIndex } from './live-index.js';

/** Admission lookups straight against the table: one statement per review. */
export class DatabaseAllowlist implements Allowlist {
  constructor(private readonly images: ImageSql) {}

  allowsAll(refs: readonly ImageReference[]): Promise<boolean[]> {
    return this.images.allowedAmong(refs);
  }

  answersNow(): boolean {
    return false;
  }
}

const VERDICT_CACHE_SIZE = 10_000;

/**
 * Admission lookups from the live index when it may answer (live-index.ts), else from the database;
 * decided once per review, so a review is answered from one place. Verdicts from memory are
 * remembered until the index changes at all (its generation), since every pod of a rollout asks
 * about the same images.
 */
export class IndexedAllowlist implements Allowlist {
  /** By parsed reference: the policy hands over the same object for the same image string. */
  private readonly verdicts = new Memo<ImageReference, boolean>(VERDICT_CACHE_SIZE);
  /**
   * The index and generation the verdicts were found in. The index too: one given up (over
   * --index-max-images) is replaced by a new one whose generation counts from 0 again, and loading
   * as many rows as the old one had seen changes brought it to the same number, so the old index's
   * verdicts were answered from the new one (an image delisted meanwhile admitted).
   */
  private index: ImageIndex | undefined;
  private generation = -1;

  constructor(
    private readonly live: LiveIndex,
    private readonly fallback: Allowlist,
  ) {}

  answersNow(): boolean {
    return this.live.answersFromMemory();
  }

  /** Booleans from memory; the database's promise otherwise. */
  allowsAll(refs: readonly ImageReference[]): readonly boolean[] | Promise<readonly boolean[]> {
    return this.live.read(
      (index) => {
        if (this.index !== index || this.generation !== index.generation) {
          this.verdicts.clear();
          this.index = index;
          this.generation = index.generation;
        }
        return refs.map((ref) => {
          let verdict = this.verdicts.get(ref);
          if (verdict === undefined) {
            verdict = index.allows(ref);
            this.verdicts.set(ref, verdict);
          }
          return verdict;
        });
      },
      async () => this.fallback.allowsAll(refs),
    );
  }
}
