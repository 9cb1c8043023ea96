import type { App } from '@platform/http-common';
import { ContainerImage, podImages, SUPPORTED_KINDS } from '../admission/pod-images.js';
import type { AdmissionPolicy, Decision } from '../admission/policy.js';
import { AdmissionReview, AdmissionReviewResponse, ImageReview, ImageReviewResponse } from '../schemas/admission.js';
import { Problem } from '../schemas/image.js';

const errors = { 400: Problem, 413: Problem, 415: Problem, 503: Problem };
/** An AdmissionReview of an UPDATE carries the object twice; Kubernetes objects reach ~1.5 MB. */
const REVIEW_BODY_LIMIT = 8 * 1024 * 1024;

/**
 * Kubernetes asks here directly: the ImagePolicyWebhook admission plugin (ImageReview) and a
 * ValidatingAdmissionWebhook (AdmissionReview). Both need HTTPS in a cluster (--certfile/--keyfile).
 */
export async function admissionRoutes(app: App, opts: { policy: AdmissionPolicy }): Promise<void> {
  const { policy } = opts;

  app.post('/admission/imagereview', {
    bodyLimit: REVIEW_BODY_LIMIT,
    schema: {
      summary: 'ImagePolicyWebhook backend: may these images run?',
      body: ImageReview,
      response: { 200: ImageReviewResponse, ...errors },
    },
  }, (request) => {
    const { spec } = request.body;
    const images = spec.containers.map((c, i) => new ContainerImage(c.image, 'containers', i));
    const answer = (decision: Decision): ImageReviewResponse => {
      const status: ImageReviewResponse['status'] = { allowed: decision.allowed };
      if (decision.denied.length) {
        request.log.info({ namespace: spec.namespace, denied: decision.denied, audit: policy.audit }, 'image review denied');
        if (!decision.allowed) status.reason = decision.message!;
        if (decision.warnings.length) status.auditAnnotations = { 'imagelist.platform/would-deny': decision.message! };
      }
      return { apiVersion: 'imagepolicy.k8s.io/v1alpha1', kind: 'ImageReview', status };
    };
    return whenDecided(policy.decide(images, spec.namespace), answer);
  });

  app.post('/admission/validate', {
    bodyLimit: REVIEW_BODY_LIMIT,
    schema: {
      summary: 'ValidatingAdmissionWebhook: Pods (incl. ephemeral containers) and workload pod templates',
      body: AdmissionReview,
      response: { 200: AdmissionReviewResponse, ...errors },
    },
  }, (request) => {
    const { request: req } = request.body;
    // Nothing new runs on DELETE or CONNECT.
    if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return admissionResponse(req.uid, true);
    const images = podImages(req.kind.kind, req.object);
    if (images === undefined) {
      // Fail closed: a webhook rule sent a kind whose images we cannot find.
      return admissionResponse(req.uid, false, `imagelist cannot check images of kind ${req.kind.kind}; it knows ${SUPPORTED_KINDS.join(', ')}`);
    }
    const answer = (decision: Decision): AdmissionReviewResponse => {
      if (decision.denied.length) {
        request.log.info({ uid: req.uid, kind: req.kind.kind, namespace: req.namespace, denied: decision.denied, audit: policy.audit }, 'admission denied');
      }
      return admissionResponse(req.uid, decision.allowed, decision.allowed ? undefined : decision.message, decision.warnings);
    };
    return whenDecided(policy.decide(images, req.namespace), answer);
  });
}

/**
 * The handlers are not async: Fastify sends a returned value at once, and a decision made from
 * memory (the hot path) then costs no promise and no trip through the microtask queue.
 */
function whenDecided<T>(decision: Decision | Promise<Decision>, answer: (d: Decision) => T): T | Promise<T> {
  return decision instanceof Promise ? decision.then(answer) : answer(decision);
}

/** An AdmissionReview answer; `status` only with a message, `warnings` only when there are some. */
function admissionResponse(uid: string, allowed: boolean, message?: string, warnings?: readonly string[]): AdmissionReviewResponse {
  const response: AdmissionReviewResponse['response'] = { uid, allowed };
  if (message) response.status = { code: allowed ? 200 : 403, message };
  if (warnings?.length) response.warnings = [...warnings];
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
