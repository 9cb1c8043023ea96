import { parser } from '@prometheus-io/lezer-promql';
import { only, type K8sObject } from './kustomize.js';

/** What a PromQL expression reads: its metric names, and the label names it matches or groups on. */
export interface PromqlUse {
  metrics: Set<string>;
  /** Label names per metric, from that selector's matchers. */
  matchers: Map<string, Set<string>>;
  /** Label names in `by (...)` / `on (...)` and the like. */
  grouping: Set<string>;
}

/** Grafana's template variables, replaced by values PromQL parses. */
export function withoutGrafanaVariables(expr: string): string {
  return expr.replace(/\$__rate_interval|\$__interval|\$__range/g, '5m').replace(/\$\{?(\w+)\}?/g, 'grafana_variable_$1');
}

/**
 * Parses with Prometheus's own grammar (@prometheus-io/lezer-promql, the parser of Prometheus's
 * web UI): throws on a syntax error, else answers the metrics and labels the expression reads.
 */
export function analyse(expr: string): PromqlUse {
  const tree = parser.parse(expr);
  const use: PromqlUse = { metrics: new Set(), matchers: new Map(), grouping: new Set() };
  const text = (from: number, to: number) => expr.slice(from, to);
  const cursor = tree.cursor();
  do {
    if (cursor.type.isError) throw new Error(`PromQL syntax error at ${cursor.from}: ${expr.slice(cursor.from, cursor.from + 40)}`);
    if (cursor.name === 'VectorSelector') {
      const selector = cursor.node;
      const id = selector.getChild('Identifier');
      const name = id ? text(id.from, id.to) : undefined;
      if (name) use.metrics.add(name);
      const labels = new Set<string>();
      const matchers = selector.getChild('LabelMatchers');
      if (matchers) {
        const inner = matchers.cursor();
        do if (inner.name === 'LabelName') labels.add(text(inner.from, inner.to));
        while (inner.next() && inner.from < matchers.to);
      }
      if (name) use.matchers.set(name, new Set([...(use.matchers.get(name) ?? []), ...labels]));
    }
    if (cursor.name === 'GroupingLabels') {
      const group = cursor.node;
      const inner = group.cursor();
      do if (inner.name === 'LabelName') use.grouping.add(text(inner.from, inner.to));
      while (inner.next() && inner.from < group.to);
    }
  } while (cursor.next());
  return use;
}

/** The samples of a Prometheus text exposition: metric name to the label names seen on it. */
export function exposition(text: string): Map<string, { labels: Set<string>; samples: string[] }> {
  const out = new Map<string, { labels: Set<string>; samples: string[] }>();
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s/.exec(line);
    if (!m) throw new Error(`not an exposition line: ${line}`);
    const entry = out.get(m[1]!) ?? { labels: new Set<string>(), samples: [] };
    for (const l of (m[3] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="/g)) entry.labels.add(l[1]!);
    entry.samples.push(line);
    out.set(m[1]!, entry);
  }
  return out;
}

interface Expressions {
  where: string;
  expr: string;
}

/** Every PromQL expression of a service's monitoring: its alerting rules and its dashboard's targets. */
export function expressionsOf(objects: K8sObject[]): Expressions[] {
  const rules = only(objects, 'PrometheusRule').spec.groups.flatMap((g: any) =>
    g.rules.map((r: any) => ({ where: `alert ${r.alert ?? r.record}`, expr: String(r.expr) })),
  );
  const dashboards = objects
    .filter((o) => o.kind === 'ConfigMap' && o.metadata.labels?.grafana_dashboard)
    .flatMap((cm) => Object.values(cm.data as Record<string, string>).map((json) => JSON.parse(json)));
  const panels = (list: any[]): any[] => list.flatMap((p) => [p, ...panels(p.panels ?? [])]);
  const targets = dashboards.flatMap((d) => [
    ...panels(d.panels).flatMap((p) => (p.targets ?? []).map((t: any) => ({ where: `panel ${p.title}`, expr: String(t.expr) }))),
    ...d.templating.list
      .filter((v: any) => v.type === 'query')
      .map((v: any) => ({ where: `variable ${v.name}`, expr: String(v.query.query).replace(/^label_values\((.*), *\w+\)$/, '$1') })),
  ]);
  return [...rules, ...targets];
}
