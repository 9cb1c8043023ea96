import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { LAST_ANSWER_MS, SHUTDOWN } from '../src/shutdown.js';

const deployment = readFileSync(new URL('../../../deploy/ecr-api/base/deployment.yaml', import.meta.url), 'utf8');
const seconds = (pattern: RegExp) => Number(pattern.exec(deployment)?.[1]) * 1000;

describe('the shutdown budget', () => {
  it('answers every request in flight within the grace, and the grace ends before Kubernetes kills the pod', () => {
    // At least a second for the last answers to go out and the close to finish.
    expect(LAST_ANSWER_MS + 1000).toBeLessThanOrEqual(SHUTDOWN.graceMs);
    const terminationGrace = seconds(/terminationGracePeriodSeconds: (\d+)/);
    const preStop = seconds(/command: \["sleep", "(\d+)"\]/);
    expect(terminationGrace).toBeGreaterThan(0);
    expect(preStop).toBeGreaterThan(0);
    expect(preStop + SHUTDOWN.graceMs).toBeLessThan(terminationGrace);
  });
});
