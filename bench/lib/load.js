// Runs one autocannon load in its own process (so the load generator never shares an event loop
// with what it measures) and prints the result as JSON on stdout.
import autocannon from 'autocannon';

let input = '';
for await (const chunk of process.stdin) input += chunk;
const spec = JSON.parse(input);
const result = await autocannon({
  url: spec.url,
  connections: spec.connections,
  duration: spec.duration,
  requests: spec.requests,
  timeout: 10,
});
process.stdout.write(
  JSON.stringify({
    rps: result.requests.average,
    p50: result.latency.p50,
    p99: result.latency.p99,
    requests: result.requests.total,
    non2xx: result.non2xx,
    errors: result.errors + result.timeouts,
  }),
);
