import type { BatchDeleteImageCommandOutput } from '@aws-sdk/client-ecr';
import type { FinalizeRequestMiddleware, MetadataBearer, MiddlewareStack, ResponseMetadata } from '@smithy/types';
import { mayHaveTakenEffect } from './unanswered.js';

/**
 * The deletes and detaches the service makes, with the AWS error that says their target is not
 * there. After an attempt that may have taken effect (no answer, a 5xx), the SDK retries them, and
 * the retry meets that error because the first attempt did the delete: the state asked for is the
 * state AWS holds, so the retry counts as done. A first attempt refused so is still refused: its
 * target was never there.
 */
const GONE: Record<string, string> = {
  DeleteRepositoryCommand: 'RepositoryNotFoundException',
  DeleteRepositoryPolicyCommand: 'RepositoryPolicyNotFoundException',
  DeleteUserCommand: 'NoSuchEntityException',
  DeleteAccessKeyCommand: 'NoSuchEntityException',
  RemoveUserFromGroupCommand: 'NoSuchEntityException',
  DeletePolicyVersionCommand: 'NoSuchEntityException',
};

/** BatchDeleteImage's failure codes for an image id that is not there: it answers them, it does not throw. */
export const IMAGE_MISSING = new Set(['ImageTagDoesNotExist', 'ImageNotFound']);

/** A retried BatchDeleteImage: the images it finds missing are the ones the first attempt deleted. */
function countMissingAsDeleted(output: BatchDeleteImageCommandOutput): void {
  const failures = output.failures ?? [];
  const missing = failures.filter((f) => IMAGE_MISSING.has(f.failureCode ?? ''));
  if (!missing.length) return;
  output.imageIds = [...(output.imageIds ?? []), ...missing.map((f) => f.imageId ?? {})];
  output.failures = failures.filter((f) => !missing.includes(f));
}

/** Makes the retries of a client's deletes count "not found" as done, after an attempt that may have taken effect. */
export function retriedDeletesAreDone<I extends object, O extends MetadataBearer>(stack: MiddlewareStack<I, O>): void {
  // Inside the retry loop: one instance per call, seeing each of its attempts.
  const middleware: FinalizeRequestMiddleware<I, O> = (next, context) => {
    const command = context.commandName ?? '';
    let unanswered = false;
    return async (args) => {
      try {
        const result = await next(args);
        if (unanswered && command === 'BatchDeleteImageCommand') countMissingAsDeleted(result.output);
        return result;
      } catch (err) {
        const e = err as Error & { $metadata?: ResponseMetadata; $response?: unknown };
        if (unanswered && GONE[command] === e.name) {
          return { response: e.$response, output: { $metadata: { requestId: e.$metadata?.requestId } } as O };
        }
        unanswered ||= mayHaveTakenEffect(err);
        throw err;
      }
    };
  };
  stack.addRelativeTo(middleware, { relation: 'after', toMiddleware: 'retryMiddleware', name: 'ecrApiRetriedDeletes' });
}
