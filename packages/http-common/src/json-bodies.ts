import { errorCodes, type FastifyInstance, type FastifyRequest } from 'fastify';
import secureJson from 'secure-json-parse';
import { HttpProblem } from './problem.js';

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
  scope.removeAllContentTypeParsers();
  scope.addContentTypeParser('*', { parseAs: 'string' }, (request, body, done) => {
    if (request.routeOptions.schema?.body === undefined || BLANK.test(body as string)) done(null, undefined);
    else jsonBodyParser(request, body, done);
  });
}

/** secure-json-parse's settings, as Fastify's own JSON parser uses them. */
const REFUSE_PROTOTYPE_KEYS = { protoAction: 'error', constructorAction: 'error' } as const;

/**
 * A body refused for a key that names a prototype: valid JSON, answered 400 naming the key.
 * `json` is the body as JSON.parse reads it (the key an own property, no prototype reached), for a
 * route that must still read a field of it, such as an AdmissionReview's uid; nothing may merge it.
 */
export class PrototypeKeyRefused extends HttpProblem {
  constructor(
    field: string,
    readonly json: unknown,
  ) {
    const message = 'is a key this service refuses (it names a JavaScript prototype)';
    super(400, `${field} ${message}`, { errors: [{ field, message }] });
  }
}

/**
 * A request body's JSON, read as Fastify's own parser reads it (secure-json-parse, which refuses a
 * `__proto__` key and a `constructor` holding a `prototype`: keys that would reach a prototype when
 * merged into an object), but a refused body is answered naming the key, where Fastify's says
 * "not valid JSON" of JSON that is valid.
 */
export function parseJsonBody(text: string): unknown {
  if (text.length === 0) throw new errorCodes.FST_ERR_CTP_EMPTY_JSON_BODY();
  try {
    return secureJson.parse(text, null, REFUSE_PROTOTYPE_KEYS);
  } catch {
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
    }
    const field = prototypeKey(json);
    if (field === undefined) throw new errorCodes.FST_ERR_CTP_INVALID_JSON_BODY();
    throw new PrototypeKeyRefused(field, json);
  }
}

/** parseJsonBody as a Fastify content-type parser (parseAs: 'string'). */
export function jsonBodyParser(_request: FastifyRequest, body: string | Buffer, done: (err: Error | null, body?: unknown) => void): void {
  let value: unknown;
  try {
    value = parseJsonBody(body as string);
  } catch (err) {
    done(err as Error, undefined);
    return;
  }
  // Outside the try: done runs the route, whose errors are not the body's.
  done(null, value);
}

/**
 * The field path (`body.spec.__proto__`) of the first key secure-json-parse refuses in parsed
 * JSON, if any. Only on a refused body, which is within the body limit; iterative, and the path is
 * built once at the end from parent links, so a deeply nested body costs linear time.
 */
function prototypeKey(root: unknown): string | undefined {
  const nodes: unknown[] = [root];
  const parents: number[] = [-1];
  const keys: string[] = ['body'];
  const pathTo = (at: number, last: string) => {
    const parts = [last];
    for (let i = at; i >= 0; i = parents[i]!) parts.push(keys[i]!);
    return parts.reverse().join('.');
  };
  for (let i = 0; i < nodes.length; i++) {
    const node = nodes[i] as Record<string, unknown>;
    if (Object.hasOwn(node, '__proto__')) return pathTo(i, '__proto__');
    const ctor = Object.hasOwn(node, 'constructor') ? node.constructor : undefined;
    if (isObject(ctor) && Object.hasOwn(ctor, 'prototype')) return pathTo(i, 'constructor.prototype');
    for (const key of Object.keys(node)) {
      const value = node[key];
      if (isObject(value)) {
        nodes.push(value);
        parents.push(i);
        keys.push(key);
      }
    }
  }
  return undefined;
}

const isObject = (value: unknown): value is object => typeof value === 'object' && value !== null;
