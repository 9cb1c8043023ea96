import { HttpProblem } from '@platform/http-common';
import { currentDeadline, Deadline, withDeadline } from './deadline.js';
import { classifyAwsError } from './errors.js';
import { outcomeOf } from './metrics.js';

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
 *
 * A change that may need an undo stops its steps the undo's budget before the request's deadline,
 * so that even a change cut short at its deadline is answered, rolled back, within it.
 */
export async function applySteps(steps: Step[]): Promise<void> {
  const request = currentDeadline();
  const undoMs = undoBudget(request);
  const mayUndo = steps.slice(0, -1).some((step) => step.undo);
  const forward = request && mayUndo ? request.before(undoMs) : undefined;
  const apply = (step: Step) => (forward ? withDeadline(forward, () => step.apply()) : step.apply());
  const applied: Step[] = [];
  try {
    for (const step of steps) {
      try {
        await apply(step);
      } catch (err) {
        throw await rollBack(applied, step, err, undoMs);
      }
      applied.push(step);
    }
  } finally {
    forward?.dispose();
  }
}

async function rollBack(applied: Step[], failed: Step, err: unknown, undoMs: number): Promise<HttpProblem> {
  const problem = classifyAwsError(err) ?? new HttpProblem(500, 'An internal error occurred.', { cause: err });
  if (applied.length === 0) return problem;
  const rolledBack: string[] = [];
  const kept: string[] = [];
  // Its own deadline: the request's (or the change's share of it) may be what failed the change.
  const deadline = Deadline.in(undoMs);
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
