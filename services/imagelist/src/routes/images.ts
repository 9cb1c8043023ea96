import { badRequest, notFound, readBodiesAsJson, validatorCompiler } from '@platform/http-common';
import querystring from 'fast-querystring';
import type { App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import { isName, nameSpellings, normalizeName, parseImageId, type ImageId } from '../reference.js';
import { Image, ImageIdParams, ListImagesQuery, Problem, PutImageBody, type SortKey } from '../schemas/image.js';
import type { Cursor, ImageStore } from '../store/images.js';
import Type from 'typebox';
import { thenNow } from '../then-now.js';

export interface ImageRoutesOptions {
  store: ImageStore;
  /** Guards PUT and DELETE; absent when no tokens file is configured. */
  authorize?: onRequestAsyncHookHandler;
}

const errors = { 400: Problem, 404: Problem, 503: Problem };
/** Reads send JSON the store already rendered (in the index, once per write), not re-serialised. */
const JSON_TYPE = 'application/json; charset=utf-8';
const writeErrors = { 400: Problem, 401: Problem, 413: Problem, 415: Problem, 503: Problem };
const security = [{ bearer: [] }];

/** Ids in the URL may be repodigests with slashes, encoded or not, so the route is a wildcard. */
function idFromPath(raw: string): ImageId {
  const id = parseImageId(raw);
  if (!id)
    throw badRequest('id must be a sha256 digest (64 lowercase hex digits, optionally "sha256:" or "name@sha256:" first)', [
      { field: 'params.id', message: 'is not a valid image id' },
    ]);
  return id;
}

/** A timestamp as the wire renders it: UTC, microseconds, a four-digit year from 0001 (PostgreSQL has no year 0). */
const WIRE_TIMESTAMP = /^(?!0000)\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d\.\d{6}Z$/;

/** The pattern, and a real calendar date (JavaScript would roll 2020-02-31 over to March). */
const isWireTimestamp = (value: string) =>
  WIRE_TIMESTAMP.test(value) && new Date(Date.parse(value)).toISOString().slice(0, 19) === value.slice(0, 19);

/** Cursors are opaque to clients: base64url of [sort key, value, id]. */
function encodeCursor(sort: SortKey, [value, id]: Cursor): string {
  return Buffer.from(JSON.stringify([sort, value, id])).toString('base64url');
}

function decodeCursor(raw: string, sort: SortKey): Cursor {
  let parsed: unknown;
  try {
    parsed = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8'));
  } catch {
    parsed = undefined;
  }
  const ok =
    Array.isArray(parsed) && parsed.length === 3 && parsed.every((p) => typeof p === 'string') && /^[a-f0-9]{64}$/.test(String(parsed[2]));
  if (!ok) throw badRequest('query.cursor is not a cursor this service issued', [{ field: 'query.cursor', message: 'is not valid' }]);
  const [cursorSort, value, id] = parsed as [string, string, string];
  if (cursorSort !== sort)
    throw badRequest(`query.cursor was issued for sort=${cursorSort}`, [
      { field: 'query.cursor', message: `belongs to sort=${cursorSort}` },
    ]);
  // Each value exactly as this service issues it, so nothing crafted reaches the database.
  const valid = sort === 'id' ? value === id : sort === 'name' ? isName(value) : isWireTimestamp(value);
  if (!valid) throw badRequest('query.cursor is not a cursor this service issued', [{ field: 'query.cursor', message: 'is not valid' }]);
  return [value, id];
}

/** A repodigest names an image too: it only matches a stored image of the same (normalised) name. */
const sameName = (id: ImageId, storedName: string) => id.name === undefined || normalizeName(id.name) === normalizeName(storedName);

export async function imageRoutes(app: App, opts: ImageRoutesOptions): Promise<void> {
  const { store } = opts;
  // onRequest: the token is checked before the body is even read.
  const guard = opts.authorize ? { onRequest: opts.authorize } : {};

  app.get(
    '/images',
    {
      schema: {
        summary: 'List images, descending by the sort key; all of them, or a page with ?limit=',
        querystring: ListImagesQuery,
        response: { 200: Type.Array(Image), ...errors },
      },
    },
    (request, reply) => {
      const { name, limit } = request.query;
      const sort = request.query.sort ?? 'updated_at';
      const after = request.query.cursor === undefined ? undefined : decodeCursor(request.query.cursor, sort);
      const listed = store.list({ name, sort, limit, after });
      // A whole list at hand (a name's cached answer) is sent at once, as GET /images/{id} is:
      // no promise and no trip through the microtask queue per request.
      if (!(listed instanceof Promise) && !listed.next) {
        reply.type(JSON_TYPE).send(listed.json as never);
        return;
      }
      // Resolving to the reply, as before: Fastify sends again when a handler's promise resolves to
      // nothing while a streamed list is still being sent (thenNow's callback would).
      return (async () => {
        const page = await listed;
        if (page.next) {
          const next = new URLSearchParams({
            ...(name === undefined ? {} : { name }),
            sort,
            limit: String(limit),
            cursor: encodeCursor(sort, page.next),
          });
          reply.header('link', `</images?${next.toString()}>; rel="next"`);
        }
        return reply.type(JSON_TYPE).send(page.json as never);
      })();
    },
  );

  // `GET /images?name=` answered before Fastify (http-common's direct-routes.ts) when it is the
  // whole query and the name's answer is cached in memory, the common lookup; the route answers
  // every other list, and any query it would refuse.
  const isQuery = validatorCompiler()({ schema: ListImagesQuery, method: 'GET', url: '/images', httpPart: 'querystring' }) as (
    query: unknown,
  ) => query is ListImagesQuery;
  app.answerDirectly('GET', '/images', (request, _response, exchange) => {
    const url = request.url!;
    const start = url.indexOf('?');
    // The route's parser (find-my-way's): the same names and values for any query.
    const query = start < 0 ? undefined : querystring.parse(url.slice(start + 1));
    const listed =
      query !== undefined && typeof query.name === 'string' && Object.keys(query).length === 1 && isQuery(query)
        ? store.cachedList(query.name, query.sort ?? 'updated_at')
        : undefined;
    if (listed) exchange.sendJson(200, listed.json);
    else exchange.pass();
  });

  app.get(
    '/images/*',
    {
      schema: {
        summary: 'Get one image by digest or repodigest (URL-encoded or not)',
        params: ImageIdParams,
        response: { 200: Image, ...errors },
      },
    },
    (request, reply) => {
      const id = idFromPath(request.params['*']);
      return thenNow(store.get(id.digest), (image) => {
        if (!image || !sameName(id, image.name)) throw notFound(`No image with id ${id.digest}${id.name ? ` named ${id.name}` : ''}.`);
        reply.type(JSON_TYPE).send(image.json as never);
      });
    },
  );

  // The writes read their bodies as the original did (readBodiesAsJson): a PUT's as JSON whatever
  // its declared type (CI scripts send it with `curl -d`, which says form-urlencoded, or with none),
  // and a DELETE's not at all (CI clients send `content-type: application/json` on every request,
  // with no body, which got 400). In a scope of their own: the admission routes keep Fastify's parser.
  await app.register(async (scope: App) => {
    readBodiesAsJson(scope);
    scope.put(
      '/images',
      {
        ...guard,
        schema: {
          summary: 'Create an image, or replace the tags of an existing one',
          body: PutImageBody,
          security,
          response: { 200: Image, ...writeErrors },
        },
      },
      async (request, reply) => {
        const { body } = request;
        const id = idFromPath(body.id);
        if (id.name !== undefined && normalizeName(id.name) !== normalizeName(body.name)) {
          throw badRequest(`body.id names ${id.name}, another image than body.name ${body.name}`, [
            { field: 'body.id', message: 'names another image than body.name' },
          ]);
        }
        const tags = body.tags == null ? body.tags : [...new Set(body.tags)];
        const { json, row } = await store.upsert({ digest: id.digest, name: body.name, tags, by: request.principal ?? null });
        request.log.info({ id: row.id, name: row.name, by: request.principal }, 'image written');
        return reply.type(JSON_TYPE).send(json as never);
      },
    );
    scope.delete(
      '/images/*',
      {
        ...guard,
        schema: {
          summary: 'Delete an image; answers 204 whether or not it existed',
          params: ImageIdParams,
          security,
          response: { 204: Type.Null(), ...writeErrors },
        },
      },
      async (request, reply) => {
        const id = idFromPath(request.params['*']);
        // A repodigest deletes only an image of its (normalised) name, as the table holds it, not as
        // this replica's memory does.
        const deleted =
          id.name === undefined ? await store.delete(id.digest) : await store.deleteNamed(id.digest, nameSpellings(normalizeName(id.name)));
        if (deleted) request.log.info({ id: id.digest, by: request.principal }, 'image deleted');
        return reply.code(204).send(null);
      },
    );
  });
}
