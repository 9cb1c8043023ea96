import { REFERENCE_MAX_LENGTH, type ImageReference } from '../reference.js';
import { describeReference, parseCached } from './parsed-reference.js';
import type { ContainerImage } from './pod-images.js';
import { shorten } from './shorten.js';

/**
 * Answers whether each normalised reference of one review is on the allowlist, in order: at once
 * from memory, or later from the database, in one lookup for the whole review.
 */
export interface Allowlist {
  allowsAll(refs: readonly ImageReference[]): readonly boolean[] | Promise<readonly boolean[]>;
  /** True when allowsAll would answer at once (from memory), until the process next yields. */
  answersNow(): boolean;
}

export interface PolicyOptions {
  /** Namespaces whose workloads are admitted without a check. */
  exemptNamespaces?: Iterable<string>;
  /** Admit everything, but say what would have been denied (warnings / audit annotations). */
  audit?: boolean;
}

export interface Decision {
  allowed: boolean;
  /** Images that are not allowed, each with why; empty when all are. */
  denied: readonly string[];
  /** The sentence for the user: names the images that failed, as many as fit in 2,048 characters. */
  message?: string;
  /** In audit mode, what would have been denied. */
  warnings: readonly string[];
}

const ALLOWED: Decision = Object.freeze({ allowed: true, denied: Object.freeze([]), warnings: Object.freeze([]) });

/**
 * The image as written, and where it stands when the review says (an ImageReview does not). One
 * too long to be a reference is cut short: denials are logged and shown to the user.
 */
function written({ image, container }: ContainerImage): string {
  const shown = image.length > REFERENCE_MAX_LENGTH ? `${image.slice(0, 64)}... (${image.length} characters)` : image;
  return container === undefined ? shown : `${shown} (${container})`;
}

/**
 * The API server sends each warning as a `Warning` header: it may cut one longer than 256
 * characters, and drops every warning past 4,096 characters in all, from every webhook of the
 * request. So one short warning per image, within half that total, then how many more there are.
 */
const WARNING_MAX = 256;
const WARNINGS_MAX = 2048;

/**
 * How many of `parts`, from the first, fit in `max` characters, each taking its length and `gap`
 * more, after `used`: room is kept for the `tail` characters of a line that says how many were
 * left out, unless every part fits.
 */
function fitting(
  parts: readonly string[],
  { max, tail, used = 0, gap = 0 }: { max: number; tail: number; used?: number; gap?: number },
): number {
  let total = used;
  for (let i = 0; i < parts.length; i++) {
    total += parts[i]!.length + gap;
    if (total > (i === parts.length - 1 ? max : max - tail)) return i;
  }
  return parts.length;
}

function auditWarnings(denied: readonly string[]): string[] {
  const warnings = denied.map((d) => shorten(`audit mode, would deny ${d}`, WARNING_MAX));
  const n = fitting(warnings, { max: WARNINGS_MAX, tail: 80 });
  if (n === warnings.length) return warnings;
  return [...warnings.slice(0, n), `audit mode, would deny ${denied.length - n} more images (the log names them)`];
}

/**
 * status.message travels back in the API server's error to the user and into the controller's
 * Events, so it names the denied images that fit in 2,048 characters, then how many more there are.
 */
const MESSAGE_MAX = 2048;
const DENIED = 'images not on the allowlist: ';

function denialMessage(denied: readonly string[]): string {
  // Each image after the first follows a '; '; the first, at most ~1,200 characters, is always named.
  const n = Math.max(1, fitting(denied, { max: MESSAGE_MAX, tail: 60, used: DENIED.length - 2, gap: 2 }));
  const message = DENIED + denied.slice(0, n).join('; ');
  return n === denied.length ? message : `${message}; and ${denied.length - n} more (the log names them)`;
}

/** Whether images[i] stood earlier in the list. A pod has a few containers, where a scan beats a Set. */
function repeated(images: readonly ContainerImage[], i: number, seen: Set<string> | undefined): boolean {
  const { image } = images[i]!;
  if (seen) {
    if (seen.has(image)) return true;
    seen.add(image);
    return false;
  }
  for (let j = 0; j < i; j++) if (images[j]!.image === image) return true;
  return false;
}

/**
 * The admission rule: an image may run when its normalised reference matches an allowlisted
 * image by digest, or by name and tag. Anything else — including references that do not parse —
 * is denied.
 */
export class AdmissionPolicy {
  private readonly exempt: Set<string>;
  readonly audit: boolean;

  constructor(
    private readonly allowlist: Allowlist,
    opts: PolicyOptions = {},
  ) {
    this.exempt = new Set(opts.exemptNamespaces ?? []);
    this.audit = opts.audit ?? false;
  }

  /**
   * A review the policy cannot check (more images than it reads, a kind it does not know), with
   * why: denied, except where nothing is denied: an exempt namespace is admitted unchecked, and
   * audit mode admits it with a warning.
   */
  refuse(reason: string, namespace: string | undefined): Decision {
    if (namespace !== undefined && this.exempt.has(namespace)) return ALLOWED;
    const denied = [reason];
    if (this.audit)
      return { allowed: true, denied, message: reason, warnings: [shorten(`audit mode, would deny: ${reason}`, WARNING_MAX)] };
    return { allowed: false, denied, message: reason, warnings: [] };
  }

  /** True when decide would answer at once, until the process next yields. */
  decidesNow(): boolean {
    return this.allowlist.answersNow();
  }

  /**
   * Synchronous while the answers come from memory, as on the hot path; a promise otherwise. Each
   * image is looked up once; denials come in container order.
   */
  decide(images: readonly ContainerImage[], namespace: string | undefined): Decision | Promise<Decision> {
    if (namespace !== undefined && this.exempt.has(namespace)) return ALLOWED;
    const seen = images.length > 16 ? new Set<string>() : undefined;
    const unique: ContainerImage[] = [];
    const refs: (ImageReference | undefined)[] = [];
    let invalid = false;
    for (let i = 0; i < images.length; i++) {
      if (repeated(images, i, seen)) continue;
      const ref = parseCached(images[i]!.image);
      unique.push(images[i]!);
      refs.push(ref);
      invalid ||= ref === undefined;
    }
    const valid = invalid ? refs.filter((ref) => ref !== undefined) : (refs as ImageReference[]);
    const answers = valid.length ? this.allowlist.allowsAll(valid) : [];
    if (answers instanceof Promise) return answers.then((allowed) => this.conclude(unique, refs, allowed));
    return this.conclude(unique, refs, answers);
  }

  /** The decision from each image's reference (undefined: not valid) and the answers for the valid ones. */
  private conclude(
    images: readonly ContainerImage[],
    refs: readonly (ImageReference | undefined)[],
    allowed: readonly boolean[],
  ): Decision {
    let denied: string[] | undefined;
    let answer = 0;
    for (let i = 0; i < images.length; i++) {
      const ref = refs[i];
      if (ref === undefined) (denied ??= []).push(`${written(images[i]!)}: not a valid image reference`);
      else if (!allowed[answer++]) (denied ??= []).push(`${written(images[i]!)} as ${describeReference(ref)}`);
    }
    if (denied === undefined) return ALLOWED;
    const message = denialMessage(denied);
    if (this.audit) return { allowed: true, denied, message, warnings: auditWarnings(denied) };
    return { allowed: false, denied, message, warnings: [] };
  }
}
