import { HttpProblem } from '@platform/http-common';
import { classifyAwsError } from './errors.js';
import { outcomeOf } from './metrics.js';

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
