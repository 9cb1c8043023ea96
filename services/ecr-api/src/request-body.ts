import { readBodiesAsJson, type App } from '@platform/http-common';

/**
 * Request bodies as the original read them: JSON whatever the Content-Type (http-common's
 * readBodiesAsJson), also one Fastify cannot parse (`json`, an empty header), which it would
 * answer 415 before any parser runs: without the header, the body goes to the parser like any
 * other. A compressed body stays a 415 (node-server.ts).
 */
export function readRequestBodies(app: App): void {
  readBodiesAsJson(app);
  app.addHook('onRequest', (request, _reply, done) => {
    if (request.headers['content-type'] !== undefined && request.mediaType === undefined) delete request.raw.headers['content-type'];
    done();
  });
}
