/**
 * Text from a review (which needs no login) cut to at most `max` characters, saying how long it
 * was: what goes into a log line or an answer stays bounded whatever a caller sends.
 */
export function shorten(text: string, max: number): string {
  if (text.length <= max) return text;
  const suffix = `... (${text.length} characters)`;
  return `${text.slice(0, Math.max(0, max - suffix.length))}${suffix}`;
}

/** Kubernetes caps object names at 253 characters; usernames and kinds are shorter still. */
const FIELD_MAX = 253;

/** A field of the review as logged or answered: cut to FIELD_MAX; undefined stays undefined. */
export const field = (text: string | undefined): string | undefined => (text === undefined ? undefined : shorten(text, FIELD_MAX));
