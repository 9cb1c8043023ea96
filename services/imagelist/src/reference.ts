/**
 * Container image references by the grammar of distribution/reference and the OCI distribution
 * spec: `[domain[:port]/]path[/path...][:tag][@sha256:<hex>]`.
 */
const ALNUM = '[a-z0-9]+';
const SEPARATOR = '(?:[._]|__|[-]+)';
const PATH_COMPONENT = `${ALNUM}(?:${SEPARATOR}${ALNUM})*`;
const DOMAIN_COMPONENT = '(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])';
const DOMAIN = `(?:${DOMAIN_COMPONENT}(?:\\.${DOMAIN_COMPONENT})*|\\[[a-fA-F0-9:]+\\])(?::[0-9]+)?`;
const NAME = `(?:${DOMAIN}/)?${PATH_COMPONENT}(?:/${PATH_COMPONENT})*`;
const TAG = '[\\w][\\w.-]{0,127}';
const HEX = '[a-f0-9]{64}';

export const NAME_MAX_LENGTH = 255;
/** The longest reference the grammar admits: name, `:` and a 128-character tag, `@sha256:` and 64 hex. */
export const REFERENCE_MAX_LENGTH = NAME_MAX_LENGTH + 1 + 128 + 8 + 64;
export const NAME_PATTERN = `^${NAME}$`;
export const TAG_PATTERN = `^${TAG}$`;
/** What `id` may be: a digest, bare or `sha256:`-prefixed, or a repodigest `name@sha256:<hex>`. */
export const ID_PATTERN = `^(?:(?:${NAME})@)?(?:sha256:)?${HEX}$`;

const nameRe = new RegExp(NAME_PATTERN);
const tagRe = new RegExp(TAG_PATTERN);
const idRe = new RegExp(`^(?:(${NAME})@sha256:(${HEX})|(?:sha256:)?(${HEX}))$`);
const referenceRe = new RegExp(`^(${NAME})(?::(${TAG}))?(?:@sha256:(${HEX}))?$`);

export const isName = (name: string) => name.length <= NAME_MAX_LENGTH && nameRe.test(name);
export const isTag = (tag: string) => tagRe.test(tag);

export interface ImageId {
  /** The 64 lowercase hex digits: the one form ids are stored and answered in. */
  digest: string;
  /** Set when the id was given as a repodigest (`name@sha256:...`). */
  name?: string;
}

/** Parses an id in any accepted form; undefined when it is none of them. */
const hexRe = new RegExp(`^${HEX}$`);

export function parseImageId(raw: string): ImageId | undefined {
  if (raw.length === 64 && hexRe.test(raw)) return { digest: raw }; // the common case, cheaply
  const m = idRe.exec(raw);
  if (!m) return undefined;
  if (m[3]) return { digest: m[3] };
  if (m[1] && m[1].length > NAME_MAX_LENGTH) return undefined;
  return { digest: m[2]!, name: m[1]! };
}

/**
 * The fully qualified form Docker and Kubernetes resolve a name to:
 * `nginx` → `docker.io/library/nginx`, `user/app` → `docker.io/user/app`, `index.docker.io/x` →
 * `docker.io/library/x`; names with a registry domain are kept as they are.
 */
export function normalizeName(name: string): string {
  const slash = name.indexOf('/');
  const first = slash === -1 ? '' : name.slice(0, slash);
  const hasDomain = slash !== -1 && (first.includes('.') || first.includes(':') || first === 'localhost' || first !== first.toLowerCase());
  let domain = hasDomain ? first : 'docker.io';
  let path = hasDomain ? name.slice(slash + 1) : name;
  if (domain === 'index.docker.io') domain = 'docker.io';
  if (domain === 'docker.io' && !path.includes('/')) path = `library/${path}`;
  return `${domain}/${path}`;
}

export interface ImageReference {
  /** Normalised name, e.g. `docker.io/library/nginx`. */
  name: string;
  /** The tag; `latest` when neither tag nor digest was given. */
  tag?: string;
  /** 64 hex digits, when the reference pins a digest (which then wins over the tag). */
  digest?: string;
}

/** Parses and normalises a reference as a container runtime would; undefined when malformed. */
export function parseReference(raw: string): ImageReference | undefined {
  if (raw.length > REFERENCE_MAX_LENGTH) return undefined;
  const m = referenceRe.exec(raw);
  if (!m || m[1]!.length > NAME_MAX_LENGTH) return undefined;
  const name = normalizeName(m[1]!);
  if (m[3]) return m[2] ? { name, tag: m[2], digest: m[3] } : { name, digest: m[3] };
  return { name, tag: m[2] ?? 'latest' };
}

/**
 * Every way a client may have written a normalised name when it stored it:
 * `docker.io/library/nginx` may be stored as `nginx`, `library/nginx`, `docker.io/nginx`, ...
 * Only spellings that normalise back to the name: `docker.io/quay.io/foo/app` is a Docker Hub
 * repository, and a stored `quay.io/foo/app` is another registry's image, not one of its spellings.
 */
export function nameSpellings(normalized: string): string[] {
  if (!normalized.startsWith('docker.io/')) return [normalized];
  const path = normalized.slice('docker.io/'.length);
  const paths = path.startsWith('library/') && path.indexOf('/', 8) === -1 ? [path, path.slice(8)] : [path];
  return paths.flatMap((p) => [p, `docker.io/${p}`, `index.docker.io/${p}`]).filter((spelling) => normalizeName(spelling) === normalized);
}
