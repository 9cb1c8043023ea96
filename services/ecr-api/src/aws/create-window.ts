/**
 * How far the service's clock may be ahead of AWS's without a create still under way being taken
 * for a finished one (a repository's or user's creation date is AWS's time, the request deadline
 * ours).
 */
export const CREATE_CLOCK_SLACK_MS = 2_000;

/**
 * For something a create leaves half-made for a moment (a repository without its policy, a user
 * outside its group), created at `createdAt`: while a create of it may still be under way, on this
 * replica or another (`creatingMs`: the AWS deadline and CREATE_CLOCK_SLACK_MS), how many seconds
 * ago it was created and in how many a retry may take it for a failed create's leftover.
 */
export function stillCreating(createdAt: Date | undefined, creatingMs: number): { agoS: number; retryS: number } | undefined {
  const created = createdAt?.getTime() ?? 0;
  const left = created + creatingMs - Date.now();
  if (left <= 0) return undefined;
  return { agoS: Math.max(0, Math.round((Date.now() - created) / 1000)), retryS: Math.max(1, Math.ceil(left / 1000)) };
}
