/**
 * This replica's writes of each image while they are in flight. Two that overlap may be answered
 * in another order than they committed: the answer handled last may be the write that lost, so
 * neither answer says what the image is now, unless both would leave it alike (a CI fan-out
 * writing one image from many jobs at once).
 */
export class LocalWrites {
  private readonly inFlight = new Map<string, { count: number; outcome: string; conflicting: boolean }>();

  /** A write of `id` that would leave it as `outcome` says is about to be sent; `settle` must follow it. */
  begin(id: string, outcome: string): void {
    const writes = this.inFlight.get(id);
    if (writes === undefined) this.inFlight.set(id, { count: 1, outcome, conflicting: false });
    else {
      writes.count++;
      writes.conflicting ||= writes.outcome !== outcome;
    }
  }

  /** A write of `id` has its answer, or failed: whether it overlapped another that would leave the image otherwise. */
  settle(id: string): boolean {
    const writes = this.inFlight.get(id);
    if (writes === undefined) return false;
    if (--writes.count === 0) this.inFlight.delete(id);
    return writes.conflicting;
  }
}
