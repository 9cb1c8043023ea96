import type { FastifyInstance } from 'fastify';

/** JSON's whitespace: a body of nothing else is no body. */
const BLANK = /^[ \t\r\n]*$/;

/**
 * Request bodies of `scope`'s routes as the Go services they replace read them (a JSON decoder on
 * the body, whatever the headers said): JSON whatever the Content-Type, be it curl's default
 * `application/x-www-form-urlencoded`, `text/plain` or none. A route without a body schema (a
 * DELETE) ignores whatever comes, so a client that sets `Content-Type: application/json` on every
 * request can delete; an empty body is no body, so a route that needs one answers 400 naming
 * `body`. Invalid JSON stays a 400 (Fastify's own JSON parser, with its prototype-poisoning
 * checks), and the body limit applies as before. A Content-Type Fastify cannot parse (`json`, an
 * empty header), which it would answer 415 before any parser runs, is dropped, so that body too
 * goes to the parser like any other. A compressed body stays a 415 (node-server.ts). For write
 * routes: the admission routes keep Fastify's parsers.
 */
export function readBodiesAsJson(scope: FastifyInstance): void {
  scope.addHook('onRequest', (request, _reply, done) => {
    if (request.headers['content-type'] !== undefined && request.mediaType === undefined) delete request.raw.headers['content-type'];
    done();
  });
  const parseJson = scope.getDefaultJsonParser('error', 'error');
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.routeOptions.schema?.body === undefined || BLANK.test(body as string)) done(null, undefined);
    else void parseJson(request, body as string, done); // synchronous: it calls done
  });
}
