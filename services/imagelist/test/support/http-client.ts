/** An answer of a running imagelist: its status, its body and how long it took. */
export interface TimedAnswer {
  status: number;
  text: string;
  ms: number;
}

/**
 * Timed calls to the imagelist process at `base`, and an ImageReview of one image (`allowed`: a
 * 200 that allows it), for the tests that run the real process through faults.
 */
export function imagelistClient(base: string, timeoutMs = 10_000) {
  const call = async (path: string, init?: RequestInit): Promise<TimedAnswer> => {
    const started = performance.now();
    const res = await fetch(base + path, { ...init, signal: AbortSignal.timeout(timeoutMs) });
    const text = await res.text();
    return { status: res.status, text, ms: performance.now() - started };
  };
  const review = async (image: string): Promise<TimedAnswer & { allowed: boolean }> => {
    const res = await call('/admission/imagereview', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        apiVersion: 'imagepolicy.k8s.io/v1alpha1',
        kind: 'ImageReview',
        spec: { containers: [{ image }], namespace: 'default' },
      }),
    });
    const allowed = res.status === 200 && (JSON.parse(res.text) as { status: { allowed: boolean } }).status.allowed;
    return { ...res, allowed };
  };
  return { call, review };
}
