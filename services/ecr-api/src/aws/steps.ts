import { HttpProblem } from '@platform/http-common';
import { Deadline, withDeadline } from './deadline.js';
import { classifyAwsError } from './errors.js';
import { outcomeOf } from './metrics.js';

/**
 * What undoing the applied steps of a failed change may take, all its undo calls together. A
 * deadline of its own, since the request's may be what failed the change (and then it has passed).
 * 3 s: an undo is one to four calls that ECR and IAM answer in well under a second; a hung
 * endpoint is reported STILL APPLIED rather than holding the answer longer. A change that fails
 * at the request's deadline is answered up to this much later; a shutdown counts on it too.
 */
export const UNDO_DEADLINE_MS = 3_000;

/** One change to AWS, with how to take it back. */
export interface Step {
  /** What the step does, as the answer says it: "set ScanOnPush to false". */
  what: string;
  apply(): Promise<void>;
  /** Undoes `apply`; absent when the change cannot be taken back. */
  undo?: () => Promise<void>;
}

/**
 * Applies `steps` in order. When one fails, the applied ones are undone in reverse order and the
 * failure is thrown as an HTTP problem whose detail says what was tried, what was rolled back and
 * what, if anything, is still applied: a request never leaves a change behind without saying so.
 */
export async function applySteps(steps: Step[]): Promise<void> {
  const applied: Step[] = [];
  for (const step of steps) {
    try {
      await step.apply();
    } catch (err) {
      throw await rollBack(applied, step, err);
    }
    applied.push(step);
  }
}

async function rollBack(applied: Step[], failed: Step, err: unknown): Promise<HttpProblem> {
  const problem = classifyAwsError(err) ?? new HttpProblem(500, 'An internal error occurred.', { cause: err });
  if (applied.length === 0) return problem;
  const rolledBack: string[] = [];
  const kept: string[] = [];
  const deadline = Deadline.in(UNDO_DEADLINE_MS);
  try {
    await withDeadline(deadline, async () => {
      for (const step of [...applied].reverse()) {
        if (!step.undo) {
          kept.push(step.what);
          continue;
        }
        try {
          await step.undo();
          rolledBack.push(step.what);
        } catch (undoErr) {
          kept.push(`${step.what} (rolling it back failed: ${outcomeOf(undoErr)})`);
        }
      }
    });
  } finally {
    deadline.dispose();
  }
  const base = `${problem.message.replace(/\.?$/, '.')} Could not ${failed.what}`;
  const detail =
    kept.length === 0
      ? `${base}; nothing was changed (rolled back: ${rolledBack.join('; ')}).`
      : `${base}. STILL APPLIED: ${kept.join('; ')}${rolledBack.length ? `; rolled back: ${rolledBack.join('; ')}` : ''}.`;
  return new HttpProblem(problem.statusCode, detail, {
    headers: problem.headers,
    cause: err,
    ...(problem.errors ? { errors: problem.errors } : {}),
  });
}
