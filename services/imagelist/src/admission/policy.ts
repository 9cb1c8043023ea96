import type { ImageReference } from '../reference.js';
import { describeReference, parseCached } from './parsed-reference.js';
import type { ContainerImage } from './pod-images.js';

/** Answers whether one normalised reference is on the allowlist: at once from memory, or later. */
export interface Allowlist {
  allows(ref: ImageReference): boolean | Promise<boolean>;
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
  /** The sentence for the user: names every image that failed. */
  message?: string;
  /** In audit mode, what would have been denied. */
  warnings: readonly string[];
}

const ALLOWED: Decision = Object.freeze({ allowed: true, denied: Object.freeze([]), warnings: Object.freeze([]) });

/** Why an image is denied, or undefined when it is allowed; later when the database decides. */
type Denial = string | undefined;
type Verdict = Denial | Promise<Denial>;

/** The image as written, and where it stands when the review says (an ImageReview does not). */
function written({ image, container }: ContainerImage): string {
  return container === undefined ? image : `${image} (${container})`;
}

const notListed = (c: ContainerImage, ref: ImageReference) => `${written(c)} as ${describeReference(ref)}`;

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
   * Synchronous while every verdict comes from memory, as on the hot path; a promise otherwise.
   * Each image is checked once; denials come in container order.
   */
  decide(images: readonly ContainerImage[], namespace: string | undefined): Decision | Promise<Decision> {
    if (namespace !== undefined && this.exempt.has(namespace)) return ALLOWED;
    const seen = images.length > 16 ? new Set<string>() : undefined;
    // Only denials and open questions are kept: an allowed pod allocates nothing here.
    let verdicts: Verdict[] | undefined;
    let waiting = false;
    for (let i = 0; i < images.length; i++) {
      if (repeated(images, i, seen)) continue;
      const verdict = this.check(images[i]!);
      if (verdict === undefined) continue;
      if (typeof verdict === 'object') waiting = true;
      (verdicts ??= []).push(verdict);
    }
    if (verdicts === undefined) return ALLOWED;
    // verdicts mixes answers from memory and promises from the database: Promise.all takes both
    // eslint-disable-next-line @typescript-eslint/await-thenable
    return waiting ? Promise.all(verdicts).then((v) => this.conclude(v)) : this.conclude(verdicts as Denial[]);
  }

  /** Why one image may not run, or undefined when it may. */
  private check(container: ContainerImage): Verdict {
    const ref = parseCached(container.image);
    if (!ref) return `${written(container)}: not a valid image reference`;
    const allowed = this.allowlist.allows(ref);
    if (allowed === true) return undefined;
    if (allowed === false) return notListed(container, ref);
    return allowed.then((ok) => (ok ? undefined : notListed(container, ref)));
  }

  private conclude(verdicts: Denial[]): Decision {
    const denied = verdicts.filter((v): v is string => v !== undefined);
    if (denied.length === 0) return ALLOWED;
    const message = `images not on the allowlist: ${denied.join('; ')}`;
    if (this.audit) return { allowed: true, denied, message, warnings: [`audit mode, would deny: ${message}`] };
    return { allowed: false, denied, message, warnings: [] };
  }
}
