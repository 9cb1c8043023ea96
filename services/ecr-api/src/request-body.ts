import type { App } from '@platform/http-common';

/** JSON's whitespace: a body of nothing else is no body. */
const BLANK = /^[ \t\r\n]*$/;

/**
 * Request bodies as the original read them (Go's json.Decoder on the body, whatever the headers
 * said): JSON whatever the Content-Type, be it curl's default `application/x-www-form-urlencoded`,
 * `text/plain`, one Fastify cannot parse (`json`, an empty header) or none. The original's DELETE
 * handlers never read a body, so a route that takes none ignores whatever comes (a client that
 * sets `Content-Type: application/json` on every request can delete), and an empty body is no
 * body: a route that needs one answers 400 naming `body`. Invalid JSON stays a 400 (Fastify's own
 * JSON parser, with its prototype-poisoning checks), a compressed body a 415 (node-server.ts), and
 * the body limit applies as before. ecr-api only: imagelist keeps Fastify's parsers.
 */
export function readBodiesAsJson(app: App): void {
  const parseJson = app.getDefaultJsonParser('error', 'error');
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.routeOptions.schema?.body === undefined || BLANK.test(body as string)) done(null, undefined);
    else void parseJson(request, body as string, done); // synchronous: it calls done
  });
  // Fastify answers 415 to a Content-Type it cannot parse before any parser runs; without the
  // header, the body goes to the parser above like any other.
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.headers['content-type'] !== undefined && request.mediaType === undefined) delete request.raw.headers['content-type'];
    done();
  });
}
