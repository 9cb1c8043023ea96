import Type, { type Static } from 'typebox';

/**
 * The most images one review may ask about. Real pods run a few; the work a review (which needs no
 * login) causes stays bounded: parsing, lookups, and at most one database query whatever the count.
 */
export const MAX_REVIEW_IMAGES = 1000;

/**
 * ImagePolicyWebhook backend request (imagepolicy.k8s.io/v1alpha1). Unknown fields are allowed. No
 * cap on the number or length of images here: a review over them is denied (routes/admission.ts),
 * and a 400 would be a backend failure, which the plugin's `defaultAllow: true` admits.
 */
export const ImageReview = Type.Object({
  apiVersion: Type.Literal('imagepolicy.k8s.io/v1alpha1'),
  kind: Type.Literal('ImageReview'),
  spec: Type.Object({
    containers: Type.Array(Type.Object({ image: Type.String() }), { minItems: 1 }),
    namespace: Type.Optional(Type.String()),
    annotations: Type.Optional(Type.Record(Type.String(), Type.String())),
  }),
});
export type ImageReview = Static<typeof ImageReview>;

export const ImageReviewResponse = Type.Object({
  apiVersion: Type.Literal('imagepolicy.k8s.io/v1alpha1'),
  kind: Type.Literal('ImageReview'),
  status: Type.Object({
    allowed: Type.Boolean(),
    reason: Type.Optional(Type.String()),
    auditAnnotations: Type.Optional(Type.Record(Type.String(), Type.String())),
  }),
});
export type ImageReviewResponse = Static<typeof ImageReviewResponse>;

/** Kubernetes sends a UUID; the bound keeps an echoed uid small. */
export const MAX_UID_LENGTH = 128;

const GroupVersionKind = Type.Object({ group: Type.String(), version: Type.String(), kind: Type.String() });
/** What a Kubernetes API server sends; anything else (`create`, `PATCH`, empty) is not a review. */
// An enum rather than a union of literals: one validation error naming the field, not four.
const Operation = Type.Enum(['CREATE', 'UPDATE', 'DELETE', 'CONNECT']);
const KubeObject = Type.Union([Type.Record(Type.String(), Type.Unknown()), Type.Null()]);

/**
 * ValidatingAdmissionWebhook request (admission.k8s.io/v1). Unknown fields are allowed. `object`
 * and, on UPDATE, `oldObject` are checked by kind in code.
 */
export const AdmissionReview = Type.Object({
  apiVersion: Type.Literal('admission.k8s.io/v1'),
  kind: Type.Literal('AdmissionReview'),
  request: Type.Object({
    uid: Type.String({ minLength: 1, maxLength: MAX_UID_LENGTH }),
    kind: GroupVersionKind,
    subResource: Type.Optional(Type.String()),
    name: Type.Optional(Type.String()),
    namespace: Type.Optional(Type.String()),
    operation: Operation,
    userInfo: Type.Optional(Type.Object({ username: Type.Optional(Type.String()) })),
    object: Type.Optional(KubeObject),
    oldObject: Type.Optional(KubeObject),
  }),
});
export type AdmissionReview = Static<typeof AdmissionReview>;

export const AdmissionReviewResponse = Type.Object({
  apiVersion: Type.Literal('admission.k8s.io/v1'),
  kind: Type.Literal('AdmissionReview'),
  response: Type.Object({
    uid: Type.String(),
    allowed: Type.Boolean(),
    status: Type.Optional(Type.Object({ code: Type.Integer(), reason: Type.Optional(Type.String()), message: Type.String() })),
    warnings: Type.Optional(Type.Array(Type.String())),
  }),
});
export type AdmissionReviewResponse = Static<typeof AdmissionReviewResponse>;
