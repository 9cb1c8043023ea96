import type { XAuthTokenVerifier } from '@platform/auth';
import { Counter, type Registry } from 'prom-client';

/**
 * What X-Auth-Token verification costs: bcrypt comparisons computed, tokens refused at once
 * because enough were already under way, and tokens refused because their comparison took longer
 * than a request waits for it. A rising `refused_busy` is a flood of forged tokens; `refused_late`,
 * a process whose CPU leaves bcrypt (at nice 19) too little.
 */
export function authMetrics(registry: Registry, verifier: XAuthTokenVerifier): void {
  new Counter({
    name: 'x_auth_token_verifications_total',
    help: 'X-Auth-Token values not yet known: bcrypt comparisons computed, refused without one because enough were under way (refused_busy), or refused because theirs took longer than a request waits (refused_late)',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const { computed, refusedBusy, refusedLate } = verifier.stats;
      this.reset();
      this.inc({ outcome: 'computed' }, computed);
      this.inc({ outcome: 'refused_busy' }, refusedBusy);
      this.inc({ outcome: 'refused_late' }, refusedLate);
    },
  });
}
