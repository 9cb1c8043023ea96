import { CLOSE_CUTOFF_MS } from './aws/request-deadlines.js';
import { UNDO_DEADLINE_MS } from './aws/steps.js';

/**
 * What a SIGTERM may take. Kubernetes sends it after the pod's 5 s preStop and kills the process
 * 30 s after the pod began terminating (deploy/ecr-api/base/deployment.yaml), so 25 s are left:
 * - drain 2 s: requests on open connections are still answered, with `Connection: close`;
 * - then the close: AWS calls still running CLOSE_CUTOFF_MS later are aborted and their requests
 *   answered 503, their changes rolled back within UNDO_DEADLINE_MS;
 * - so every request is answered within about 2 + 3 + 3 = 8 s, and the grace, 10 s, leaves the
 *   rest for the answers to go out. The process then exits 0; at the grace it would exit 1.
 */
export const SHUTDOWN = { drainMs: 2_000, graceMs: 10_000 } as const;

/** When, after SIGTERM, the last request is answered at the latest (tests check it fits the grace). */
export const LAST_ANSWER_MS = SHUTDOWN.drainMs + CLOSE_CUTOFF_MS + UNDO_DEADLINE_MS;
