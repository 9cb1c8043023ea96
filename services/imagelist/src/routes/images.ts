import { badRequest, notFound } from '@platform/http-common';
import type { App } from '@platform/http-common';
import type { onRequestAsyncHookHandler } from 'fastify';
import { normalizeName, parseImageId, type ImageId } from '../reference.js';
import { Image, ImageIdParams, ListImagesQuery, Problem, PutImageBody } from '../schemas/image.js';
import type { ImageStore } from '../store/images.js';
import Type from 'typebox';

export interface ImageRoutesOptions {
  store: ImageStore;
  /** Guards PUT and DELETE; absent when no tokens file is configured. */
  authorize?: onRequestAsyncHookHandler;
}

const errors = { 400: Problem, 404: Problem, 503: Problem };
const writeErrors = { 400: Problem, 401: Problem, 413: Problem, 415: Problem, 503: Problem };
const security = [{ bearer: [] }];

/** Ids in the URL may be repodigests with slashes, encoded or not, so the route is a wildcard. */
function idFromPath(raw: string): ImageId {
  const id = parseImageId(raw);
  if (!id) throw badRequest('id must be a sha256 digest (64 lowercase hex digits, optionally "sha256:" or "name@sha256:" first)', [{ field: 'params.id', message: 'is not a valid image id' }]);
  return id;
}

/** A repodigest names an image too: it only matches a stored image of the same (normalised) name. */
const sameName = (id: ImageId, storedName: string) => id.name === undefined || normalizeName(id.name) === normalizeName(storedName);

export async function imageRoutes(app: App, opts: ImageRoutesOptions): Promise<void> {
  const { store } = opts;
  // onRequest: the token is checked before the body is even read.
  const guard = opts.authorize ? { onRequest: opts.authorize } : {};

  app.get('/images', {
    schema: {
      summary: 'List images, newest first by the sort key',
      querystring: ListImagesQuery,
      response: { 200: Type.Array(Image), ...errors },
    },
  }, async (request) => store.list({ name: request.query.name, sort: request.query.sort ?? 'updated_at' }));

  app.get('/images/*', {
    schema: {
      summary: 'Get one image by digest or repodigest (URL-encoded or not)',
      params: ImageIdParams,
      response: { 200: Image, ...errors },
    },
  }, async (request) => {
    const id = idFromPath(request.params['*']);
    const image = await store.get(id.digest);
    if (!image || !sameName(id, image.name)) throw notFound(`No image with id ${id.digest}${id.name ? ` named ${id.name}` : ''}.`);
    return image;
  });

  app.put('/images', {
    ...guard,
    schema: {
      summary: 'Create an image, or replace the tags of an existing one',
      body: PutImageBody,
      security,
      response: { 200: Image, ...writeErrors },
    },
  }, async (request) => {
    const { body } = request;
    const id = idFromPath(body.id);
    if (id.name !== undefined && normalizeName(id.name) !== normalizeName(body.name)) {
      throw badRequest(`body.id names ${id.name}, another image than body.name ${body.name}`, [
        { field: 'body.id', message: 'names another image than body.name' },
      ]);
    }
    const tags = body.tags == null ? body.tags : [...new Set(body.tags)];
    const image = await store.upsert({ digest: id.digest, name: body.name, tags, by: request.principal ?? null });
    request.log.info({ id: image.id, name: image.name, by: request.principal }, 'image written');
    return image;
  });

  app.delete('/images/*', {
    ...guard,
    schema: {
      summary: 'Delete an image; answers 204 whether or not it existed',
      params: ImageIdParams,
      security,
      response: { 204: Type.Null(), ...writeErrors },
    },
  }, async (request, reply) => {
    const id = idFromPath(request.params['*']);
    let deleted: boolean;
    if (id.name === undefined) {
      deleted = await store.delete(id.digest);
    } else {
      const image = await store.get(id.digest);
      deleted = image !== undefined && sameName(id, image.name) && (await store.delete(id.digest, image.name));
    }
    if (deleted) request.log.info({ id: id.digest, by: request.principal }, 'image deleted');
    return reply.code(204).send(null);
  });
}
