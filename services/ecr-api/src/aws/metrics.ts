import { Counter, Histogram, type Registry } from 'prom-client';

/** AWS-call metrics on the app's registry: what the service costs AWS, and what AWS answers. */
export interface AwsMetrics {
  /** Every AWS API call (after the SDK's retries) by service, operation and outcome (`success` or the error name). */
  calls: Counter<'service' | 'operation' | 'outcome'>;
  duration: Histogram<'service' | 'operation'>;
  /** AssumeRole calls by outcome: how often the per-account credential cache misses. */
  assumeRole: Counter<'outcome'>;
}

export function createAwsMetrics(registry: Registry): AwsMetrics {
  return {
    calls: new Counter({
      name: 'aws_api_calls_total',
      help: 'AWS API calls by service, operation and outcome (success, or the AWS error name)',
      labelNames: ['service', 'operation', 'outcome'],
      registers: [registry],
    }),
    duration: new Histogram({
      name: 'aws_api_call_duration_seconds',
      help: 'AWS API call latency, retries included',
      labelNames: ['service', 'operation'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
      registers: [registry],
    }),
    assumeRole: new Counter({
      name: 'sts_assume_role_total',
      help: 'STS AssumeRole calls made to refresh the per-account credential cache, by outcome',
      labelNames: ['outcome'],
      registers: [registry],
    }),
  };
}

/** The outcome label of a failed call: the AWS error name, bounded to a safe label value. */
export function outcomeOf(error: unknown): string {
  const name = (error as { name?: unknown } | null)?.name;
  const label = typeof name === 'string' && name ? name : 'Error';
  return label.replace(/[^A-Za-z0-9_.]/g, '_').slice(0, 64);
}
