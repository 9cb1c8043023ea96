import path from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DEPLOY, id, only, render, type K8sObject } from './support/kustomize.js';
import { analyse, expressionsOf, withoutGrafanaVariables } from './support/promql.js';
import { invalid, validateObjects } from './support/schema.js';

// The monitoring kustomizations (deploy/<service>/monitoring): valid prometheus-operator objects
// that scrape the pods the base runs, alerting rules an operator can act on, and a dashboard.
const SERVICES = [
  { svc: 'imagelist', port: 8443, path: '/metrics', scheme: 'https' },
  { svc: 'ecr-api', port: 8080, path: '/v1/ecr/metrics', scheme: 'http' },
] as const;

describe.each(SERVICES)('$svc monitoring', ({ svc, port, path: metricsPath, scheme }) => {
  const monitoring = () => render(`${svc}/monitoring`);
  const base = () => render(`${svc}/base`);

  it('renders a ServiceMonitor, a PrometheusRule and a dashboard ConfigMap that pass the schemas (strict)', async () => {
    const objects = monitoring();
    expect(objects.map((o) => o.kind).sort()).toEqual(['ConfigMap', 'PrometheusRule', 'ServiceMonitor']);
    for (const o of objects) expect(o.metadata.namespace, id(o)).toBe(svc);
    expect(await invalid(objects)).toEqual([]);
  });

  it("scrapes the Service's pods on the port, path and scheme they serve metrics on", () => {
    const monitor = only(monitoring(), 'ServiceMonitor');
    const service = only(base(), 'Service', svc);
    const deployment = only(base(), 'Deployment');
    const selector = monitor.spec.selector.matchLabels as Record<string, string>;
    for (const [k, v] of Object.entries(selector)) expect(service.metadata.labels?.[k], k).toBe(v);
    expect(monitor.spec.endpoints).toHaveLength(1);
    const [endpoint] = monitor.spec.endpoints;
    const servicePort = service.spec.ports.find((p: any) => p.name === endpoint.port);
    const containerPort = deployment.spec.template.spec.containers[0].ports.find((p: any) => p.name === servicePort.targetPort);
    expect(containerPort.containerPort).toBe(port);
    expect([endpoint.path, endpoint.scheme]).toEqual([metricsPath, scheme]);
    // The pods' own scrape annotations agree.
    const annotations = deployment.spec.template.metadata.annotations;
    expect(annotations['prometheus.io/path']).toBe(metricsPath);
    expect(annotations['prometheus.io/port']).toBe(String(port));
  });

  if (svc === 'imagelist')
    it('checks the serving certificate against its CA, under a name the certificate carries', () => {
      const { tlsConfig } = only(monitoring(), 'ServiceMonitor').spec.endpoints[0];
      const serving = only(base(), 'Certificate', 'imagelist-serving');
      expect(tlsConfig.ca.secret).toEqual({ name: serving.spec.secretName, key: 'ca.crt' });
      expect(serving.spec.dnsNames).toContain(tlsConfig.serverName);
      expect(tlsConfig.insecureSkipVerify).toBeUndefined();
    });

  it('alerts with a severity, a summary and a description, on expressions Prometheus parses', () => {
    const rules = only(monitoring(), 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
    expect(rules.length).toBeGreaterThanOrEqual(5);
    expect(new Set(rules.map((r: any) => r.alert)).size).toBe(rules.length);
    for (const rule of rules) {
      expect(rule.alert, rule.expr).toMatch(/^[A-Z][A-Za-z]+$/);
      expect(['warning', 'critical'], rule.alert).toContain(rule.labels?.severity);
      expect(rule.annotations?.summary, rule.alert).toBeTruthy();
      expect(rule.annotations?.description, rule.alert).toBeTruthy();
      expect(rule.for, rule.alert).toMatch(/^\d+[smh]$/);
      expect(() => analyse(String(rule.expr)), rule.alert).not.toThrow();
    }
  });

  it('loads a Grafana dashboard through the sidecar label, with queries that parse', () => {
    const cm = only(monitoring(), 'ConfigMap');
    expect(cm.metadata.labels?.grafana_dashboard).toBe('1');
    const files = Object.keys(cm.data);
    expect(files).toEqual([`${svc}.json`]);
    const dashboard = JSON.parse(cm.data[files[0]!]);
    expect(dashboard).toEqual(JSON.parse(readFileSync(path.join(DEPLOY, svc, 'monitoring', 'dashboard.json'), 'utf8')));
    expect(dashboard.uid).toBe(`platform-${svc}`);
    expect(dashboard.templating.list.map((v: any) => v.name)).toEqual(['datasource', 'namespace']);
    const exprs = expressionsOf(monitoring()).filter((e) => !e.where.startsWith('alert'));
    expect(exprs.length).toBeGreaterThanOrEqual(10);
    for (const { where, expr } of exprs) {
      expect(() => analyse(withoutGrafanaVariables(expr)), where).not.toThrow();
      // Every query is scoped to this service and the chosen namespace.
      if (!where.startsWith('variable')) expect(expr, where).toContain(`job="${svc}", namespace="$namespace"`);
    }
  });
});

describe('imagelist alerts come before the webhook times out', () => {
  it('the latency alerts watch buckets below the webhook timeoutSeconds', () => {
    const timeout = only(render('imagelist/base'), 'ValidatingWebhookConfiguration').webhooks[0].timeoutSeconds as number;
    const rules = only(render('imagelist/monitoring'), 'PrometheusRule').spec.groups.flatMap((g: any) => g.rules);
    const latency = rules.filter((r: any) => /le="[\d.]+"/.test(r.expr));
    expect(latency.map((r: any) => r.alert).sort()).toEqual(['ImagelistAdmissionNearTimeout', 'ImagelistAdmissionSlow']);
    for (const r of latency) for (const m of String(r.expr).matchAll(/le="([\d.]+)"/g)) expect(Number(m[1])).toBeLessThan(timeout);
  });
});

describe('the monitoring checks reject broken input', () => {
  it('a misspelt ServiceMonitor field, a PrometheusRule without expr, and PromQL that does not parse', async () => {
    const objects = render('imagelist/monitoring');
    const monitor = structuredClone(only(objects, 'ServiceMonitor'));
    monitor.spec.endpoints[0].tlsConfg = monitor.spec.endpoints[0].tlsConfig;
    const rule = structuredClone(only(objects, 'PrometheusRule'));
    delete rule.spec.groups[0].rules[0].expr;
    const [r1, r2] = (await validateObjects([monitor, rule] as K8sObject[])).map((p) => p.join('\n'));
    expect(r1).toMatch(/strict: .*'"?tlsConfg"?' does not exist/);
    expect(r2).toMatch(/expr/);
    expect(() => analyse('sum(rate(http_request_duration_seconds_count[5m])')).toThrow(/syntax error/);
    expect(() => analyse('up{job="imagelist" == 0')).toThrow(/syntax error/);
  });

  it('the PromQL reader finds the metrics and labels an expression uses', () => {
    const use = analyse(
      'sum by (namespace, route) (rate(a_total{job="x", route=~"/a.*"}[5m])) / on (namespace) group_left sum(b_seconds_bucket{le="1"})',
    );
    expect([...use.metrics].sort()).toEqual(['a_total', 'b_seconds_bucket']);
    expect([...use.matchers.get('a_total')!].sort()).toEqual(['job', 'route']);
    expect([...use.matchers.get('b_seconds_bucket')!]).toEqual(['le']);
    expect([...use.grouping].sort()).toEqual(['namespace', 'route']);
  });
});
