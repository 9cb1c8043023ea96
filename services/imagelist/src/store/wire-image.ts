import type { Image, SortKey } from '../schemas/image.js';

/**
 * An image kept as its wire JSON, `{"created_at":"…","updated_at":"…","id":"…","name":"…","tags":[…]}`,
 * ready to send. Its fields are read back by position rather than parsed: timestamps are
 * fixed-width (27 characters), ids are 64 hex digits, and names and tags are plain ASCII without
 * quotes or backslashes (the reference grammar, and a CHECK constraint of migration 003), so
 * their JSON is their text. One string per image (plus its id key and a name-index entry): about 0.6 KB per image, 60 MB of heap for 100,000.
 */
export type WireImage = string;

export const toWire = (row: Image): WireImage =>
  JSON.stringify({ created_at: row.created_at, updated_at: row.updated_at, id: row.id, name: row.name, tags: row.tags });

const CREATED_AT = 15; // after {"created_at":"
const UPDATED_AT = 58; // after ","updated_at":"
const ID = 93; // after ","id":"
const NAME = 167; // after ","name":"
const TAGS = '","tags":[';

export const wireName = (json: WireImage): string => json.slice(NAME, json.indexOf(TAGS, NAME));

/** The value an image sorts by; strings compare as the database orders them. */
export function wireSortValue(json: WireImage, sort: SortKey): string {
  switch (sort) {
    case 'created_at':
      return json.slice(CREATED_AT, CREATED_AT + 27);
    case 'updated_at':
      return json.slice(UPDATED_AT, UPDATED_AT + 27);
    case 'id':
      return json.slice(ID, ID + 64);
    case 'name':
      return wireName(json);
  }
}

export const wireHasTag = (json: WireImage, tag: string): boolean => json.includes(`"${tag}"`, json.indexOf(TAGS, NAME) + TAGS.length - 1);

/** Descending by `sort`, ties broken by id, as the database's ORDER BY; keys are read once each. */
export function sortWire(images: WireImage[], sort: SortKey): WireImage[] {
  const keyed = images.map((json) => ({ json, key: wireSortValue(json, sort), id: json.slice(ID, ID + 64) }));
  keyed.sort((a, b) => (a.key !== b.key ? (a.key < b.key ? 1 : -1) : a.id < b.id ? 1 : a.id > b.id ? -1 : 0));
  return keyed.map((k) => k.json);
}
