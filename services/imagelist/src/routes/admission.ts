import type { App } from '@platform/http-common';
import { podImages, SUPPORTED_KINDS } from '../admission/pod-images.js';
import type { AdmissionPolicy } from '../admission/policy.js';
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
  }, async (request) => {
    const { spec } = request.body;
    const images = spec.containers.map((c, i) => ({ container: `containers[${i}]`, image: c.image }));
    const decision = await policy.decide(images, spec.namespace);
    if (decision.denied.length) request.log.info({ namespace: spec.namespace, denied: decision.denied, audit: policy.audit }, 'image review denied');
    return {
      apiVersion: 'imagepolicy.k8s.io/v1alpha1' as const,
      kind: 'ImageReview' as const,
      status: {
        allowed: decision.allowed,
        ...(decision.message && !decision.allowed ? { reason: decision.message } : {}),
        ...(decision.warnings.length ? { auditAnnotations: { 'imagelist.platform/would-deny': decision.message! } } : {}),
      },
    };
  });

  app.post('/admission/validate', {
    bodyLimit: REVIEW_BODY_LIMIT,
    schema: {
      summary: 'ValidatingAdmissionWebhook: Pods (incl. ephemeral containers) and workload pod templates',
      body: AdmissionReview,
      response: { 200: AdmissionReviewResponse, ...errors },
    },
  }, async (request) => {
    const { request: req } = request.body;
    const answer = (allowed: boolean, extra: { message?: string; warnings?: string[] } = {}) => ({
      apiVersion: 'admission.k8s.io/v1' as const,
      kind: 'AdmissionReview' as const,
      response: {
        uid: req.uid,
        allowed,
        ...(extra.message ? { status: { code: allowed ? 200 : 403, message: extra.message } } : {}),
        ...(extra.warnings?.length ? { warnings: extra.warnings } : {}),
      },
    });

    // Nothing new runs on DELETE or CONNECT.
    if (req.operation !== 'CREATE' && req.operation !== 'UPDATE') return answer(true);
    const images = podImages(req.kind.kind, req.object);
    if (images === undefined) {
      // Fail closed: a webhook rule sent a kind whose images we cannot find.
      return answer(false, { message: `imagelist cannot check images of kind ${req.kind.kind}; it knows ${SUPPORTED_KINDS.join(', ')}` });
    }
    const decision = await policy.decide(images, req.namespace);
    if (decision.denied.length) {
      request.log.info({ uid: req.uid, kind: req.kind.kind, namespace: req.namespace, denied: decision.denied, audit: policy.audit }, 'admission denied');
    }
    return answer(decision.allowed, { ...(decision.allowed ? {} : { message: decision.message! }), warnings: decision.warnings });
  });
}
