/**
 * An image's wire JSON, `{"created_at","updated_at","id","name","tags"}` in the original Go
 * service's order, with its timestamps in UTC with microseconds (`2017-10-27T16:51:06.698062Z`).
 * Names and tags are printable ASCII without `"` or `\` (the reference grammar, and a CHECK
 * constraint of migration 003), so their JSON is their text and no escaping is needed.
 */
export function renderImage(createdUs: number, updatedUs: number, id: string, name: string, tagsJson: string): string {
  return `{"created_at":"${formatTimestamp(createdUs)}","updated_at":"${formatTimestamp(updatedUs)}","id":"${id}","name":"${name}","tags":[${tagsJson}]}`;
}

/** Tags as the inside of their JSON array: `"v1","latest"`. */
export const tagsJson = (tags: readonly string[]): string => (tags.length === 0 ? '' : `"${tags.join('","')}"`);

/**
 * Microseconds since the epoch (as image-sql.ts selects them; a float64 is exact there until the
 * year 2255) in the wire format.
 */
export function formatTimestamp(us: number): string {
  const seconds = Math.floor(us / 1_000_000);
  const micro = us - seconds * 1_000_000;
  return `${new Date(seconds * 1000).toISOString().slice(0, 19)}.${String(micro).padStart(6, '0')}Z`;
}
