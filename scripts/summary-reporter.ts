import type { Reporter, TestModule } from 'vitest/node';

/**
 * Ends the run with the tests that were skipped, each under its full name (which says what it
 * needs), and one plain line, `tests: N passed, N failed, N skipped`, for CI log readers.
 */
export default class SummaryReporter implements Reporter {
  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    const counts = { passed: 0, failed: 0, skipped: 0 };
    const skipped: string[] = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') counts.passed++;
        else if (state === 'failed') counts.failed++;
        else {
          counts.skipped++;
          skipped.push(`${mod.project.name}: ${test.fullName}`);
        }
      }
      if (mod.state() === 'failed' && [...mod.children.allTests()].length === 0) counts.failed++;
    }
    if (skipped.length) process.stdout.write(`\nskipped, with what each needs:\n${skipped.map((s) => `  - ${s}`).join('\n')}\n`);
    process.stdout.write(`\ntests: ${counts.passed} passed, ${counts.failed} failed, ${counts.skipped} skipped\n`);
  }
}
