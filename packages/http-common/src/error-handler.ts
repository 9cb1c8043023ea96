import type { FastifyError, FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { HttpProblem, type FieldError } from './problem.js';

const PROBLEM_TYPE = 'application/problem+json; charset=utf-8';

interface ValidationIssue {
  instancePath?: string;
  message?: string;
  keyword?: string;
  schemaPath?: string;
  params?: Record<string, unknown>;
  parentSchema?: { description?: string; title?: string; anyOf?: { const?: unknown; type?: unknown }[] };
}

/** The values a choice allows (an enum, or a union of constants), where the failed schema is one. */
function allowedValues(issue: ValidationIssue): unknown[] | undefined {
  if (issue.keyword === 'enum' && Array.isArray(issue.params?.allowedValues)) return issue.params.allowedValues as unknown[];
  const anyOf = issue.keyword === 'anyOf' ? issue.parentSchema?.anyOf : undefined;
  return anyOf?.every((s) => 'const' in s) ? anyOf.map((s) => s.const) : undefined;
}

/** An alternative that only says "not set": `null`, or the constant `""`. */
const isUnset = (s: { const?: unknown; type?: unknown }) => s.type === 'null' || s.const === null || s.const === '';

/**
 * The findings that add nothing to the others: those of the "not set" alternatives (`null`, `""`)
 * of a field that is something or unset, and that field's "must match a schema in anyOf". For
 * `tags: [""]` against `string[] | null`, the finding is the empty tag, not "tags must be null".
 */
function unsetAlternatives(issues: ValidationIssue[]): Set<ValidationIssue> {
  const drop = new Set<ValidationIssue>();
  for (const issue of issues) {
    const anyOf = issue.keyword === 'anyOf' ? issue.parentSchema?.anyOf : undefined;
    if (!anyOf || !issue.schemaPath || !anyOf.some(isUnset) || anyOf.every(isUnset)) continue;
    const unsetPaths = anyOf.flatMap((s, i) => (isUnset(s) ? [`${issue.schemaPath}/${i}/`] : []));
    const fromUnset = (i: ValidationIssue) => unsetPaths.some((p) => `${i.schemaPath ?? ''}/`.startsWith(p));
    for (const i of issues) if (fromUnset(i)) drop.add(i);
    // The anyOf's own finding goes when its other alternatives said what is wrong.
    if (issues.some((i) => i !== issue && !drop.has(i) && i.schemaPath?.startsWith(`${issue.schemaPath}/`))) drop.add(issue);
  }
  return drop;
}

/**
 * Turns AJV's findings into `{field, message}` pairs such as `body.name: must be a valid image name`.
 * A choice is one finding naming its allowed values, not AJV's one per alternative; a field that
 * may be `null` (or `""`) is named by what is wrong with its value, not also by "must be null".
 */
export function fieldErrors(issues: ValidationIssue[], context: string | undefined): FieldError[] {
  const root = context === 'querystring' ? 'query' : (context ?? 'request');
  const unset = unsetAlternatives(issues);
  issues = issues.filter((i) => !unset.has(i));
  const choices = new Set(issues.filter((i) => allowedValues(i)).map((i) => i.instancePath ?? ''));
  const errors = issues
    .filter((issue) => !(issue.keyword === 'const' && choices.has(issue.instancePath ?? '')))
    .map((issue) => {
      let path = (issue.instancePath ?? '').split('/').filter(Boolean).join('.');
      if (issue.keyword === 'required' && typeof issue.params?.missingProperty === 'string') {
        path = path ? `${path}.${issue.params.missingProperty}` : issue.params.missingProperty;
        return { field: `${root}.${path}`, message: 'is required' };
      }
      if (issue.keyword === 'additionalProperties' && typeof issue.params?.additionalProperty === 'string') {
        return { field: `${root}.${path ? `${path}.` : ''}${issue.params.additionalProperty}`, message: 'is not allowed' };
      }
      const allowed = allowedValues(issue);
      const described = issue.keyword === 'pattern' && issue.parentSchema?.description;
      // AJV's own words for a constant, "must be equal to constant", do not say which one.
      const constant = issue.keyword === 'const' && issue.params && 'allowedValue' in issue.params;
      const message = allowed
        ? `must be one of ${allowed.map(String).join(', ')}`
        : constant
          ? `must be ${JSON.stringify(issue.params!.allowedValue)}`
          : described
            ? `must be ${issue.parentSchema!.description}`
            : (issue.message ?? 'is invalid');
      return { field: path ? `${root}.${path}` : root, message };
    });
  return errors.filter((e, i) => errors.findIndex((x) => x.field === e.field && x.message === e.message) === i);
}

/**
 * The problem an error answers: itself when it is one, else what `classify` makes of it, else
 * Fastify's own errors (validation, body parsing) made readable, and any other 5xx anonymous.
 */
export function problemOf(error: unknown, classify?: (error: unknown) => HttpProblem | undefined): HttpProblem {
  return error instanceof HttpProblem ? error : (classify?.(error) ?? problemFromFastify(error as FastifyError));
}

/** A problem about one part of the request, named in `errors` as validation problems name theirs. */
const fieldProblem = (status: number, detail: string, field: string, message: string) =>
  new HttpProblem(status, detail, { errors: [{ field, message }] });

function problemFromFastify(error: FastifyError): HttpProblem {
  if (error.validation) {
    const errors = fieldErrors(error.validation, error.validationContext);
    return new HttpProblem(400, errors.map((e) => `${e.field} ${e.message}`).join('; '), { errors });
  }
  const status = error.statusCode ?? 500;
  if (status >= 500) return new HttpProblem(status, 'The server could not handle the request.');
  switch (error.code) {
    case 'FST_ERR_CTP_BODY_TOO_LARGE':
      return fieldProblem(413, 'The request body is larger than this service accepts.', 'body', 'is larger than this service accepts');
    case 'FST_ERR_CTP_INVALID_MEDIA_TYPE':
      return fieldProblem(415, 'Send the request body as application/json.', 'headers.content-type', 'must be application/json');
    case 'FST_ERR_CTP_EMPTY_JSON_BODY':
      return fieldProblem(400, 'The request body is empty; send a JSON document.', 'body', 'is empty');
    default:
      break;
  }
  if (error instanceof SyntaxError || error.code === 'FST_ERR_CTP_INVALID_JSON_BODY') {
    return fieldProblem(400, 'The request body is not valid JSON.', 'body', 'is not valid JSON');
  }
  // Fastify's own 4xx errors (bad content length, bad URL...) have safe, fixed messages.
  return new HttpProblem(status, error.message);
}

export function sendProblem(reply: FastifyReply, problem: HttpProblem): FastifyReply {
  return reply.code(problem.statusCode).headers(problem.headers).type(PROBLEM_TYPE).send(problem.toBody());
}

/**
 * The one error handler: JSON problem bodies, no stack traces or driver messages on the wire,
 * 4xx logged at info.
 * `classify` lets a service turn its dependency errors (database down, AWS errors) into problems.
 * A 503 is the service or a dependency unavailable for now (the client may retry): logged at warn
 * with its cause's name, code and message. During an outage every request that needs the
 * dependency fails alike, and a driver's stack on each of them buried the lines that say what
 * changed. Any other 5xx (a dependency that refuses us, a fault of the service) is logged at error
 * with its stack.
 */
export function installErrorHandler(app: FastifyInstance, classify?: (error: unknown) => HttpProblem | undefined): void {
  app.setErrorHandler((error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
    // The request's own stream failed: its client left before sending the whole body. Its error
    // (ECONNRESET, 'aborted') is not a dependency's, which `classify` would take it for: imagelist
    // logged 'The database is unavailable' at warn for every such client.
    if (error === request.raw.errored) {
      const problem = new HttpProblem(400, 'The client closed the connection before the request body arrived whole.');
      request.log.info({ status: problem.statusCode, detail: problem.message }, 'request rejected');
      return sendProblem(reply, problem);
    }
    const problem = problemOf(error, classify);
    if (problem.statusCode === 503) {
      const cause = (error instanceof HttpProblem ? error.cause : error) as { name?: string; code?: string; message?: string } | undefined;
      request.log.warn(cause ? { cause: { type: cause.name, code: cause.code, message: cause.message } } : {}, problem.message);
    } else if (problem.statusCode >= 500) {
      request.log.error({ err: error }, problem.message);
    } else {
      request.log.info({ status: problem.statusCode, detail: problem.message }, 'request rejected');
    }
    return sendProblem(reply, problem);
  });
}

/** The methods a path may answer; OPTIONS is not among them: ecr-api answers it on every path (CORS). */
const ROUTE_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE'] as const;

/**
 * Requests that match no route: 405 with `Allow` when the path has routes for other methods (as
 * the original ecr-api's router answered, and RFC 9110 asks), else 404. Both as problems. The work
 * is bounded: one router lookup per method.
 */
export function installNotFoundHandler(app: FastifyInstance): void {
  app.setNotFoundHandler((request, reply) => {
    const path = request.url.split('?')[0]!;
    const allowed = ROUTE_METHODS.filter((method) => app.findRoute({ method, url: path }) !== null);
    if (allowed.length === 0) return sendProblem(reply, new HttpProblem(404, `No route for ${request.method} ${path}.`));
    const allow = allowed.join(', ');
    return sendProblem(
      reply,
      new HttpProblem(405, `${request.method} is not allowed on ${path}; it allows ${allow}.`, { headers: { allow } }),
    );
  });
}
