import type { XAuthTokenVerifier } from '@platform/auth';
import { Counter, type Registry } from 'prom-client';

/**
 * What X-Auth-Token verification costs: bcrypt comparisons computed, and tokens refused at once
 * because enough were already under way. A rising `refused_busy` is a flood of forged tokens.
 */
export function authMetrics(registry: Registry, verifier: XAuthTokenVerifier): void {
  new Counter({
    name: 'x_auth_token_verifications_total',
    help: 'X-Auth-Token values not yet known: bcrypt comparisons computed, or refused without one because enough were under way',
    labelNames: ['outcome'],
    registers: [registry],
    collect() {
      const { computed, refusedBusy } = verifier.stats;
      this.reset();
      this.inc({ outcome: 'computed' }, computed);
      this.inc({ outcome: 'refused_busy' }, refusedBusy);
    },
  });
}
