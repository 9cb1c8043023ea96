import { HttpProblem } from '@platform/http-common';
import { currentDeadline, Deadline, withDeadline } from './deadline.js';
import { classifyAwsError } from './errors.js';
import { outcomeOf } from './metrics.js';
import { mayHaveTakenEffect } from './unanswered.js';

/**
 * Why an undo failed, for the answer: a socket error's code (the SDK names a reset TimeoutError
 * too, which told the client that nothing answered when something refused), else the error's name.
 */
function whyUndoFailed(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^E[A-Z]{2,}$/.test(code) ? code : outcomeOf(err);
}

/**
 * What undoing the applied steps of a failed change may take, all its undo calls together: an undo
 * is one to four calls that ECR and IAM answer in well under a second, so a hung endpoint is
 * reported STILL APPLIED rather than holding the answer longer. A shutdown counts on it too.
 */
export const UNDO_DEADLINE_MS = 3_000;

/**
 * The undo's budget within a request's deadline: UNDO_DEADLINE_MS, or a quarter of a deadline
 * shorter than 12 s (`--aws-deadline` may be as short as 0.1 s).
 */
const undoBudget = (deadline: Deadline | undefined) => Math.min(UNDO_DEADLINE_MS, (deadline?.totalMs ?? Infinity) / 4);

/** An undo that declines, for a reason the answer gives: "it is the user's only access key". */
export class UndoDeclined extends Error {
  constructor(readonly reason: string) {
    super(reason);
    this.name = 'UndoDeclined';
  }
}

/** One change to AWS, with how to take it back. */
export interface Step {
  /** What the step does, as the answer says it: "set ScanOnPush to false". */
  what: string;
  apply(): Promise<void>;
  /**
   * Undoes `apply`; absent when the change cannot be taken back. Also called, with `unconfirmed`,
   * when `apply` failed in a way that may still have taken effect (no answer, a 5xx): it must then
   * undo only what this request did, and do nothing when there is nothing to undo.
   */
  undo?: (unconfirmed: boolean) => Promise<void>;
  /**
   * Whether an `apply` that failed that way took effect after all, read back from AWS: when it did,
   * the change goes on as if it had been answered. Absent, or failing: it may have.
   */
  tookEffect?: () => Promise<boolean>;
}

/**
 * Applies `steps` in order. When one fails, the applied ones are undone in reverse order and the
 * failure is thrown as an HTTP problem whose detail says what was tried, what was rolled back and
 * what, if anything, is still applied: a request never leaves a change behind without saying so.
 * A step whose call got no answer may have been done: it is undone too, or named as perhaps done.
 *
 * A change that may need an undo stops its steps the undo's budget before the request's deadline,
 * so that even a change cut short at its deadline is answered, rolled back, within it.
 */
export async function applySteps(steps: Step[]): Promise<void> {
  const request = currentDeadline();
  const undoMs = undoBudget(request);
  const mayUndo = steps.some((step) => step.undo || step.tookEffect);
  const forward = request && mayUndo ? request.before(undoMs) : undefined;
  const apply = (step: Step) => (forward ? withDeadline(forward, () => step.apply()) : step.apply());
  const applied: Step[] = [];
  try {
    for (const step of steps) {
      // Not sent at all: nothing of it to undo.
      if (forward?.passed) throw await rollBack(applied, step, forward.signal.reason, false, Deadline.in(undoMs));
      try {
        await apply(step);
      } catch (err) {
        // Its own deadline: the request's (or the change's share of it) may be what failed the change.
        const undoDeadline = Deadline.in(undoMs);
        let unconfirmed = mayHaveTakenEffect(err);
        if (unconfirmed && step.tookEffect) {
          const took = await tookEffect(step, undoDeadline);
          if (took) {
            undoDeadline.dispose();
            applied.push(step);
            continue;
          }
          if (took === false) unconfirmed = false;
        }
        throw await rollBack(applied, step, err, unconfirmed, undoDeadline);
      }
      applied.push(step);
    }
  } finally {
    forward?.dispose();
  }
}

/** The step's `tookEffect`, under a deadline of its own; undefined when it cannot tell. */
async function tookEffect(step: Step, deadline: Deadline): Promise<boolean | undefined> {
  try {
    return await withDeadline(deadline, () => step.tookEffect!());
  } catch {
    return undefined;
  }
}

/** Undoes `applied` (and `failed`, when it may have taken effect) under `deadline`, which it disposes. */
async function rollBack(applied: Step[], failed: Step, err: unknown, unconfirmed: boolean, deadline: Deadline): Promise<HttpProblem> {
  const problem = classifyAwsError(err) ?? new HttpProblem(500, 'An internal error occurred.', { cause: err });
  const rolledBack: string[] = [];
  const kept: string[] = [];
  /** What the failed step may have done and is not undone. */
  const perhaps: string[] = [];
  try {
    if (applied.length === 0 && !unconfirmed) return problem;
    await withDeadline(deadline, async () => {
      if (unconfirmed) {
        // Undone quietly: the answer already says it could not be done.
        if (!failed.undo) perhaps.push(failed.what);
        else {
          // Likely to hang as the step did: it gets half the time when applied steps wait for theirs.
          const share = applied.length ? deadline.before((deadline.at - Date.now()) / 2) : deadline;
          try {
            await withDeadline(share, () => failed.undo!(true));
          } catch (undoErr) {
            perhaps.push(`${failed.what} (rolling it back failed: ${whyUndoFailed(undoErr)})`);
          } finally {
            if (share !== deadline) share.dispose();
          }
        }
      }
      for (const step of [...applied].reverse()) {
        if (!step.undo) {
          kept.push(step.what);
          continue;
        }
        try {
          await step.undo(false);
          rolledBack.push(step.what);
        } catch (undoErr) {
          if (undoErr instanceof UndoDeclined) kept.push(`${step.what} (not rolled back: ${undoErr.reason})`);
          else kept.push(`${step.what} (rolling it back failed: ${whyUndoFailed(undoErr)})`);
        }
      }
    });
  } finally {
    deadline.dispose();
  }
  const base = `${problem.message.replace(/\.?$/, '.')} Could not ${failed.what}`;
  const undone = rolledBack.length ? ` (rolled back: ${rolledBack.join('; ')})` : '';
  const still = [...kept, ...(perhaps.length ? [`perhaps: ${perhaps.join('; ')}`] : [])];
  const detail =
    still.length === 0
      ? `${base}; nothing was changed${undone}.`
      : `${base}. STILL APPLIED: ${still.join('; ')}${rolledBack.length ? `; rolled back: ${rolledBack.join('; ')}` : ''}.`;
  return new HttpProblem(problem.statusCode, detail, {
    headers: problem.headers,
    cause: err,
    ...(problem.errors ? { errors: problem.errors } : {}),
  });
}
