import Type from 'typebox';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createApp, type App } from '../src/index.js';
import { RequestLatency } from '../src/request-latency.js';

let app: App;
beforeAll(async () => {
  app = await createApp({ metricsPath: '/metrics', defaultMetrics: false, openapi: { title: 'test', version: '1.0.0' } });
  app.get('/fast', async () => ({ ok: true }));
  app.get('/slow', async () => {
    await new Promise((r) => setTimeout(r, 30));
    return { ok: true };
  });
  app.post('/things/:id', { schema: { body: Type.Object({ n: Type.Integer() }) } }, async () => ({ ok: true }));
  await app.ready();
});
afterAll(() => app.close());

/** `name{labels} value` lines of the exposition, as a map. */
async function scrape(): Promise<Map<string, number>> {
  const res = await app.inject('/metrics');
  expect(res.headers['content-type']).toMatch(/^text\/plain; version=0\.0\.4/);
  const lines = res.body.split('\n').filter((l) => l.startsWith('http_request_duration_seconds'));
  return new Map(lines.map((l) => [l.slice(0, l.lastIndexOf(' ')), Number(l.slice(l.lastIndexOf(' ') + 1))]));
}

const series = (route: string, method = 'GET', status = 200) => `method="${method}",route="${route}",status_code="${status}"`;

describe('request latency metrics', () => {
  it('exports a Prometheus histogram per method, route pattern and status', async () => {
    await app.inject('/fast');
    await app.inject('/fast');
    await app.inject('/slow');
    const m = await scrape();
    const res = await app.inject('/metrics');
    expect(res.body).toContain('# TYPE http_request_duration_seconds histogram');
    expect(m.get(`http_request_duration_seconds_count{${series('/fast')}}`)).toBe(2);
    expect(m.get(`http_request_duration_seconds_bucket{le="+Inf",${series('/fast')}}`)).toBe(2);
    // buckets are cumulative and end at the count
    const slow = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5].map((le) =>
      m.get(`http_request_duration_seconds_bucket{le="${le}",${series('/slow')}}`)!,
    );
    expect(slow.slice(0, 5)).toEqual([0, 0, 0, 0, 0]); // it took >= 30 ms
    expect(slow.at(-1)).toBe(1);
    expect([...slow].sort((a, b) => a - b)).toEqual(slow);
    expect(m.get(`http_request_duration_seconds_sum{${series('/slow')}}`)).toBeGreaterThanOrEqual(0.025);
  });

  it('counts HEAD apart from GET, once each', async () => {
    await app.inject({ method: 'HEAD', url: '/fast' });
    const m = await scrape();
    expect(m.get(`http_request_duration_seconds_count{${series('/fast', 'HEAD')}}`)).toBe(1);
    expect(m.get(`http_request_duration_seconds_count{${series('/fast')}}`)).toBe(2);
  });

  it('labels a route by its pattern and rejected requests by their status', async () => {
    await app.inject({ method: 'POST', url: '/things/1', payload: { n: 1 } });
    await app.inject({ method: 'POST', url: '/things/2', payload: { n: 'x' } });
    const m = await scrape();
    expect(m.get(`http_request_duration_seconds_count{${series('/things/:id', 'POST')}}`)).toBe(1);
    expect(m.get(`http_request_duration_seconds_count{${series('/things/:id', 'POST', 400)}}`)).toBe(1);
  });

  it('records requests that match no route as "unmatched", also when their body is bad', async () => {
    await app.inject('/nowhere/1');
    await app.inject('/nowhere/2');
    await app.inject({ method: 'POST', url: '/nowhere', payload: '{bad', headers: { 'content-type': 'application/json' } });
    const m = await scrape();
    expect(m.get(`http_request_duration_seconds_count{${series('unmatched', 'GET', 404)}}`)).toBe(2);
    expect(m.get(`http_request_duration_seconds_count{${series('unmatched', 'POST', 400)}}`)).toBe(1);
    expect([...m.keys()].some((k) => k.includes('/nowhere'))).toBe(false);
  });

  it('starts over when the registry is reset', async () => {
    app.metrics.resetMetrics();
    const m = await scrape();
    // prom-client drops a reset series until it is observed again
    expect(m.get(`http_request_duration_seconds_count{${series('/fast')}}`) ?? 0).toBe(0);
  });
});

describe('RequestLatency', () => {
  it('counts a value on a bound in that bucket, and one past the last only in +Inf, sum and count', async () => {
    const registry = new Registry();
    const latency = new RequestLatency(registry);
    for (const seconds of [0.001, 0.0011, 2.5, 7]) latency.observe('GET', '/x', 200, seconds);
    latency.observe('GET', '/x', 503, 0.0001);
    const text = await registry.metrics();
    const value = (labels: string) => Number(new RegExp(`^http_request_duration_seconds${labels} (\\S+)$`, 'm').exec(text)?.[1]);
    const ok = 'method="GET",route="/x",status_code="200"';
    expect(value(`_bucket\\{le="0.001",${ok}\\}`)).toBe(1);
    expect(value(`_bucket\\{le="0.0025",${ok}\\}`)).toBe(2);
    expect(value(`_bucket\\{le="1",${ok}\\}`)).toBe(2);
    expect(value(`_bucket\\{le="2.5",${ok}\\}`)).toBe(3);
    expect(value(`_bucket\\{le="\\+Inf",${ok}\\}`)).toBe(4);
    expect(value(`_count\\{${ok}\\}`)).toBe(4);
    expect(value(`_sum\\{${ok}\\}`)).toBeCloseTo(9.5021, 6);
    expect(value(`_count\\{method="GET",route="/x",status_code="503"\\}`)).toBe(1);
    const [json] = await registry.getMetricsAsJSON();
    expect(json).toMatchObject({ name: 'http_request_duration_seconds', type: 'histogram' });
    expect(json!.values).toContainEqual({
      metricName: 'http_request_duration_seconds_count',
      labels: { method: 'GET', route: '/x', status_code: 503 },
      value: 1,
    });
  });

  it('refuses a second metric of its name in one registry', () => {
    const registry = new Registry();
    new RequestLatency(registry);
    expect(() => new RequestLatency(registry)).toThrow(/already been registered/);
  });
});
