import { NodeHttpHandler } from '@smithy/node-http-handler';
import { Agent as HttpAgent } from 'node:http';
import { Agent as HttpsAgent } from 'node:https';
import type { AttemptTimeouts } from './clients.js';

/** The AWS services the service calls; each has a connection pool of its own. */
export type AwsService = 'sts' | 'ecr' | 'iam' | 'tagging';

/**
 * Sockets per host of one service's pool. A call waiting for a socket waits inside the SDK's 3 s
 * connect timeout (it starts before the agent hands out a socket), so a full pool fails its calls
 * at 3 s: a pool per service keeps one service's hung operation from failing the others' calls
 * (with an endpoint override all services share one host, and so one per-host limit).
 *
 * What else bounds the calls in flight: each attempt holds its socket at most 10 s (the answer
 * timeout) and a request's calls end at its deadline (25 s), but the number of requests is not
 * bounded (the auth limits bound only bcrypt work on unverified tokens), and a scan runs 8 calls
 * at once. So a hung endpoint would hold a socket per request it receives for up to 25 s; the pool
 * is what bounds the sockets, and failing a call after 3 s in the queue sheds that load instead of
 * queueing it up to the deadline. 64 keeps the bound of the shared pool on AWS (4 hosts x 64) and
 * carries about 600 calls/s of one service at 100 ms a call, far above what the service is asked.
 */
export const MAX_SOCKETS = 64;

/** An HTTP handler with its own pair of keep-alive agents (HTTP for emulators, HTTPS for AWS). */
export function pooledHandler(timeouts: AttemptTimeouts): NodeHttpHandler {
  return new NodeHttpHandler({
    httpAgent: new HttpAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
    httpsAgent: new HttpsAgent({ keepAlive: true, maxSockets: MAX_SOCKETS }),
    ...timeouts,
    throwOnRequestTimeout: true,
    // requestTimeout ends once the headers have arrived: a body that then stops arriving would
    // hold the attempt until the request's deadline instead of failing it for a retry.
    socketTimeout: timeouts.requestTimeout,
  });
}
