import {
  bodyReadBefore,
  HttpProblem,
  jsonBodyParser,
  parseJsonBody,
  plainJsonBody,
  problemOf,
  PrototypeKeyRefused,
  validatorCompiler,
  type App,
  type DirectHandler,
} from '@platform/http-common';
import type { Static, TSchema } from 'typebox';
import fastJson from 'fast-json-stringify';
import type { FastifyBaseLogger } from 'fastify';
import { jsonShapeProblem, SCAN_FROM_BYTES } from '../admission/json-shape.js';
import { Counter } from 'prom-client';
import { imagesToCheck } from '../admission/images-to-check.js';
import { ContainerImage, isObj, kindName, SUPPORTED_KINDS, TooManyImages } from '../admission/pod-images.js';
import type { AdmissionPolicy, Decision } from '../admission/policy.js';
import {
  AdmissionReview,
  AdmissionReviewResponse,
  ImageReview,
  ImageReviewResponse,
  MAX_REVIEW_IMAGES,
  MAX_UID_LENGTH,
} from '../schemas/admission.js';
import { Problem } from '../schemas/image.js';
import { thenNow } from '../then-now.js';
import { field } from '../admission/shorten.js';

const errors = { 400: Problem, 413: Problem, 415: Problem, 503: Problem };
/** An AdmissionReview of an UPDATE carries the object twice; Kubernetes objects reach ~1.5 MB. */
const REVIEW_BODY_LIMIT = 8 * 1024 * 1024;

/**
 * Kubernetes asks here directly: the ImagePolicyWebhook admission plugin (ImageReview) and a
 * ValidatingAdmissionWebhook (AdmissionReview). Both need HTTPS in a cluster (--certfile/--keyfile).
 */
export async function admissionRoutes(app: App, opts: { policy: AdmissionPolicy }): Promise<void> {
  const { policy } = opts;
  // The services' JSON parser (with its prototype-poisoning checks), after the shape's bounds.
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    const text = body as string;
    const problem = text.length >= SCAN_FROM_BYTES ? jsonShapeProblem(text) : undefined;
    if (problem) done(new HttpProblem(400, `The request body ${problem}.`, { errors: [{ field: 'body', message: problem }] }), undefined);
    else jsonBodyParser(request, text, done);
  });
  // Counted in plain numbers and read when Prometheus scrapes: a labelled inc() per review would
  // hash its labels on the hot path.
  const counts = { imagereview: { allowed: 0, denied: 0, would_deny: 0 }, validate: { allowed: 0, denied: 0, would_deny: 0 } };
  new Counter({
    name: 'imagelist_admission_decisions_total',
    help: 'Admission answers by webhook and decision: allowed, denied, or would_deny (allowed in audit mode)',
    labelNames: ['webhook', 'decision'] as const,
    registers: [app.metrics],
    collect() {
      this.reset();
      for (const [webhook, byDecision] of Object.entries(counts)) {
        for (const [decision, n] of Object.entries(byDecision)) if (n) this.inc({ webhook, decision }, n);
      }
    },
  });
  const counted = (webhook: keyof typeof counts, allowed: boolean, denials: number) =>
    counts[webhook][!allowed ? 'denied' : denials ? 'would_deny' : 'allowed']++;

  /** An ImageReview's answer; the route's and the direct handler's. */
  const reviewImages = (spec: ImageReview['spec'], log: FastifyBaseLogger): ImageReviewResponse | Promise<ImageReviewResponse> => {
    const answer = (decision: Decision): ImageReviewResponse => {
      counted('imagereview', decision.allowed, decision.denied.length);
      const status: ImageReviewResponse['status'] = { allowed: decision.allowed };
      if (decision.denied.length) {
        log.info(
          { namespace: field(spec.namespace), denied: decision.denied },
          decision.allowed ? 'image review would deny' : 'image review denied',
        );
        if (!decision.allowed) status.reason = decision.message!;
        // Without a prefix: the plugin adds `imagepolicywebhook.image-policy.k8s.io/` and rejects a key with a `/`.
        if (decision.warnings.length) status.auditAnnotations = { 'would-deny': decision.message! };
      }
      return imageReviewResponse(status);
    };
    if (spec.containers.length > MAX_REVIEW_IMAGES)
      return answer(policy.refuse(new TooManyImages('spec.containers').message, spec.namespace));
    // The review lists a Pod's containers, then its initContainers, as one list that does not say
    // which field an entry came from: a denial names the image only.
    const images = spec.containers.map((c) => new ContainerImage(c.image));
    return thenNow(policy.decide(images, spec.namespace), answer);
  };

  /** An AdmissionReview's answer; the route's and the direct handler's. */
  const reviewAdmission = (
    req: AdmissionReview['request'],
    log: FastifyBaseLogger,
  ): AdmissionReviewResponse | Promise<AdmissionReviewResponse> => {
    // Nothing new runs on DELETE or CONNECT.
    if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') {
      counted('validate', true, 0);
      return admissionResponse(req.uid, true);
    }
    const answer = (decision: Decision): AdmissionReviewResponse => {
      counted('validate', decision.allowed, decision.denied.length);
      if (decision.denied.length) {
        log.info(
          { ...reviewed(req), operation: req.operation, user: field(req.userInfo?.username), denied: decision.denied },
          decision.allowed ? 'admission would deny' : 'admission denied',
        );
      }
      return admissionResponse(req.uid, decision.allowed, decision.allowed ? undefined : decision.message, decision.warnings);
    };
    let images: ContainerImage[] | undefined;
    try {
      images = imagesToCheck({ kind: req.kind, operation: req.operation, object: req.object, oldObject: req.oldObject });
    } catch (err) {
      if (!(err instanceof TooManyImages)) throw err;
      return answer(policy.refuse(err.message, req.namespace));
    }
    // Fail closed: a webhook rule sent a kind whose images we cannot find.
    if (images === undefined) {
      const kind = field(kindName(req.kind));
      return answer(policy.refuse(`imagelist cannot check images of kind ${kind}; it knows ${SUPPORTED_KINDS.join(', ')}`, req.namespace));
    }
    return thenNow(policy.decide(images, req.namespace), answer);
  };

  /**
   * The direct handler of a review route (http-common's direct-routes.ts): a review of the route's
   * schema, decided from memory, is answered here, as the route would; anything else (another
   * Content-Type, a body that is not such a review, a decision that needs the database) is handed
   * to the route, which answers it.
   */
  const compile = validatorCompiler();
  const answerNow = <S extends TSchema, A>(
    schema: S,
    answerSchema: TSchema,
    review: (body: Static<S>) => A | Promise<A>,
  ): DirectHandler => {
    const isReview = compile({ schema, method: 'POST', url: '', httpPart: 'body' }) as (body: unknown) => boolean;
    // Fastify's own serializer, so that the answer is the route's to the byte.
    const serialize: (answer: A) => string = fastJson(answerSchema);
    const answer = (body: Buffer): string | undefined => {
      if (!policy.decidesNow()) return undefined;
      const text = body.toString('utf8');
      if (text.length >= SCAN_FROM_BYTES && jsonShapeProblem(text)) return undefined;
      const json = parseJsonBody(text);
      if (!isReview(json)) return undefined;
      const answer = review(json as Static<S>);
      // Not reached while decidesNow() holds: the route would answer it.
      if (answer instanceof Promise) return void answer.catch(() => {});
      return serialize(answer);
    };
    return (request, _response, exchange) => {
      if (!plainJsonBody(request, REVIEW_BODY_LIMIT)) return exchange.pass();
      exchange.readBody((body) => {
        let json: string | undefined;
        try {
          json = answer(body);
        } catch {
          // not JSON, a prototype key: the route answers it as it answers such a body
        }
        if (json === undefined) exchange.pass(body);
        else exchange.sendJson(200, json);
      });
    };
  };

  app.post(
    '/admission/imagereview',
    {
      bodyLimit: REVIEW_BODY_LIMIT,
      preParsing: bodyReadBefore,
      schema: {
        summary: 'ImagePolicyWebhook backend: may these images run? A request that is not a review is answered denied',
        body: ImageReview,
        response: { 200: ImageReviewResponse, ...errors },
      },
      // The plugin takes any answer but a 200 for a failure of the backend, which `defaultAllow:
      // true` admits: a request that is not a review (not JSON, too large, not of the schema) is
      // answered 200, denied, saying why. A 5xx stays one: then the backend did fail.
      errorHandler(error, request, reply) {
        const problem = problemOf(error);
        if (problem.statusCode >= 500) {
          app.errorHandler(error, request, reply);
          return;
        }
        counted('imagereview', false, 1);
        request.log.info({ status: problem.statusCode, detail: problem.message }, 'image review denied: not a review');
        const reason = `not an ImageReview imagelist can read: ${problem.message}`;
        void reply.code(200).send(imageReviewResponse({ allowed: false, reason }));
      },
    },
    (request) => reviewImages(request.body.spec, request.log),
  );

  app.post(
    '/admission/validate',
    {
      bodyLimit: REVIEW_BODY_LIMIT,
      preParsing: bodyReadBefore,
      schema: {
        summary: 'ValidatingAdmissionWebhook: Pods (incl. ephemeral containers) and workload pod templates',
        body: AdmissionReview,
        response: { 200: AdmissionReviewResponse, ...errors },
      },
      // A 4xx is a webhook failure, which `failurePolicy: Ignore` admits: a review that is
      // malformed but names its uid is answered 200, denied, saying why. Without a uid there is no
      // answer the API server would take, so the 4xx stays. A 5xx stays one: the backend did fail.
      errorHandler(error, request, reply) {
        const problem = problemOf(error);
        // A body refused for a prototype key is valid JSON whose uid can be read: it is answered
        // 200 denied like any other malformed review that names its uid.
        const body = error instanceof PrototypeKeyRefused ? error.json : request.body;
        const uid = problem.statusCode < 500 ? reviewUid(body) : undefined;
        if (uid === undefined) {
          app.errorHandler(error, request, reply);
          return;
        }
        counted('validate', false, 1);
        request.log.info({ uid, status: problem.statusCode, detail: problem.message }, 'admission denied: not a review');
        void reply.code(200).send(admissionResponse(uid, false, `not an AdmissionReview imagelist can read: ${problem.message}`));
      },
    },
    (request) => reviewAdmission(request.body.request, request.log),
  );
  app.answerDirectly(
    'POST',
    '/admission/imagereview',
    answerNow(ImageReview, ImageReviewResponse, (body) => reviewImages(body.spec, app.log)),
  );
  app.answerDirectly(
    'POST',
    '/admission/validate',
    answerNow(AdmissionReview, AdmissionReviewResponse, (body) => reviewAdmission(body.request, app.log)),
  );
}

/** The uid of a body that may not be a review, if it names one the schema would take. */
function reviewUid(body: unknown): string | undefined {
  const req = isObj(body) ? body.request : undefined;
  const uid = isObj(req) ? req.uid : undefined;
  return typeof uid === 'string' && uid.length >= 1 && uid.length <= MAX_UID_LENGTH ? uid : undefined;
}

/** What a log line says of the reviewed object: each field as sent, cut to a bounded length. */
function reviewed(req: AdmissionReview['request']) {
  return { uid: req.uid, kind: field(req.kind.kind), namespace: field(req.namespace), name: field(objectName(req)) };
}

/** The object's name; a Pod created from `generateName` has none yet, so its prefix stands in. */
function objectName(req: AdmissionReview['request']): string | undefined {
  if (req.name) return req.name;
  const metadata = isObj(req.object) ? req.object.metadata : undefined;
  if (!isObj(metadata)) return undefined;
  const name = metadata.name || metadata.generateName;
  return typeof name === 'string' ? name : undefined;
}

const imageReviewResponse = (status: ImageReviewResponse['status']): ImageReviewResponse => ({
  apiVersion: 'imagepolicy.k8s.io/v1alpha1',
  kind: 'ImageReview',
  status,
});

/**
 * An AdmissionReview answer; `status` only with a message, `warnings` only when there are some.
 * A denial says `reason: Forbidden`, so that kubectl prints `Error from server (Forbidden): ...`.
 */
function admissionResponse(uid: string, allowed: boolean, message?: string, warnings?: readonly string[]): AdmissionReviewResponse {
  const response: AdmissionReviewResponse['response'] = { uid, allowed };
  if (message) response.status = allowed ? { code: 200, message } : { code: 403, reason: 'Forbidden', message };
  if (warnings?.length) response.warnings = [...warnings];
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
