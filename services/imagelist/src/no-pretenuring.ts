import { setFlagsFromString } from 'node:v8';

/**
 * Turns off V8's allocation-site pretenuring before imagelist allocates anything much. V8 marks an
 * object literal's allocation site "tenured" once nearly all its objects outlive a scavenge, and
 * from then on allocates them straight in the old generation, for the life of the process. A
 * scavenge that came while the first requests of a burst of new connections were still in flight
 * (a load's start; in two of three starts under wrk with 50 connections) marked sites of the
 * request path so: every request's garbage then went to the old generation, which was collected
 * (mark-compact, 6-12 ms pauses) every ~0.7 s under load instead of every ~10 s, and each
 * scavenge took 3 ms instead of 1.3. On `/admission/validate` (100,000 images, this machine's
 * figures): p99 25-39 ms and 9,000-14,000 req/s in such a process, against 7-8 ms and
 * 19,000-20,000 req/s without pretenuring, in every start. imagelist's long-lived data are typed
 * arrays and interned strings, which do not need it.
 *
 * The same as `node --no-allocation-site-pretenuring`, which NODE_OPTIONS does not accept; set
 * here, it holds however the service is started (the image, `pnpm start`, the bench, the tests).
 */
setFlagsFromString('--no-allocation-site-pretenuring');
