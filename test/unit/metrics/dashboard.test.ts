// config/grafana-dashboard.json against the metrics as implemented: every metric name a panel,
// annotation or variable queries exists in the registry (histogram series by their base name),
// the panels the operators need are there, ids are unique, panels do not overlap, and every query
// goes through the `datasource` variable and the `instance` filter.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import type { Registry } from 'prom-client';
import { AmbassadorMetrics } from '../../../src/metrics/metrics.ts';

const DASHBOARD_PATH = new URL('../../../config/grafana-dashboard.json', import.meta.url);

interface Target {
  expr?: string;
  refId?: string;
  datasource?: { type?: string; uid?: string };
}
interface Panel {
  id?: number;
  type: string;
  title?: string;
  gridPos?: { h: number; w: number; x: number; y: number };
  datasource?: { type?: string; uid?: string };
  targets?: Target[];
  panels?: Panel[];
}
interface Variable {
  name: string;
  type: string;
  query?: unknown;
  definition?: string;
  datasource?: { type?: string; uid?: string };
  current?: { value?: unknown };
}
interface Dashboard {
  schemaVersion: number;
  title: string;
  uid: string;
  __inputs?: Array<{ name: string; type: string; pluginId: string }>;
  panels: Panel[];
  templating: { list: Variable[] };
  annotations?: { list: Array<{ expr?: string }> };
}

const dashboard = JSON.parse(readFileSync(DASHBOARD_PATH, 'utf8')) as Dashboard;

function allPanels(panels: readonly Panel[] = dashboard.panels): Panel[] {
  return panels.flatMap((panel) => [panel, ...allPanels(panel.panels ?? [])]);
}

function panelExprs(): string[] {
  return allPanels().flatMap((panel) => (panel.targets ?? []).map((target) => target.expr ?? ''));
}

/** Every PromQL text of the dashboard: panels, annotations, variable queries. */
function allExprs(): string[] {
  const variables = dashboard.templating.list.flatMap((variable) => [variable.definition ?? '', queryText(variable.query)]);
  const annotations = (dashboard.annotations?.list ?? []).map((annotation) => annotation.expr ?? '');
  return [...panelExprs(), ...variables, ...annotations].filter((expr) => expr !== '');
}

function queryText(query: unknown): string {
  if (typeof query === 'string') return query;
  if (query !== null && typeof query === 'object' && 'query' in query && typeof query.query === 'string') return query.query;
  return '';
}

const METRIC_NAME = /\b(?:pg_ambassador|process|nodejs)_[a-z0-9_]*[a-z0-9]/g;

function metricNames(exprs: readonly string[]): string[] {
  return [...new Set(exprs.flatMap((expr) => expr.match(METRIC_NAME) ?? []))].sort();
}

/** Names not in the registry; `_bucket`/`_sum`/`_count` count only on a histogram (or summary). */
function unknownMetrics(registry: Registry, names: readonly string[]): string[] {
  return names.filter((name) => {
    if (registry.getSingleMetric(name)) return false;
    const suffix = /_(bucket|sum|count)$/.exec(name);
    if (!suffix) return true;
    const base = registry.getSingleMetric(name.slice(0, -suffix[0].length)) as unknown as { type?: string } | undefined;
    return !(base && (base.type === 'histogram' || (base.type === 'summary' && suffix[1] !== 'bucket')));
  });
}

function registry(): Registry {
  const source = {
    clients: () => ({ login: 0, active: 0, idle: 0, waiting: 0 }),
    pools: () => [],
    hosts: () => [],
    credentials: () => [],
    pinned: () => new Map<string, number>(),
    bytes: () => ({ received: 0, sent: 0 }),
    cancels: () => ({ results: { sent: 0, idle: 0, 'no-match': 0, 'too-many': 0 }, inFlight: 0 }),
    paused: () => false,
    now: () => 0,
  };
  return new AmbassadorMetrics(source, { version: 'test', defaultMetrics: true }).registry;
}

test('every metric the dashboard queries exists in the registry', () => {
  const names = metricNames(allExprs());
  assert.ok(names.length >= 25, `expected many metrics in the dashboard, found ${names.length}`);
  assert.deepEqual(unknownMetrics(registry(), names), []);
});

test('the name check rejects unknown names and histogram suffixes on non-histograms', () => {
  const reg = registry();
  const names = metricNames(['rate(pg_ambassador_nope_total[5m])', 'pg_ambassador_requests_total_bucket', 'nodejs_no_such_metric', 'pg_ambassador_query_duration_seconds_bucket']);
  assert.deepEqual(unknownMetrics(reg, names), ['nodejs_no_such_metric', 'pg_ambassador_nope_total', 'pg_ambassador_requests_total_bucket']);
});

test('the dashboard covers traffic, latency, pool, hosts, failover, errors, credentials, reloads, bytes and process', () => {
  const used = new Set(metricNames(panelExprs()));
  const required = [
    'pg_ambassador_transactions_total', 'pg_ambassador_queries_total', 'pg_ambassador_requests_total',
    'pg_ambassador_query_duration_seconds_bucket', 'pg_ambassador_transaction_duration_seconds_bucket',
    'pg_ambassador_server_connections', 'pg_ambassador_pool_size', 'pg_ambassador_pool_waiting_clients', 'pg_ambassador_pool_wait_seconds_bucket',
    'pg_ambassador_client_connections', 'pg_ambassador_host_up', 'pg_ambassador_host_role', 'pg_ambassador_circuit_breaker_state',
    'pg_ambassador_replica_lag_bytes', 'pg_ambassador_replica_lag_seconds', 'pg_ambassador_failovers_total', 'pg_ambassador_health_events_total',
    'pg_ambassador_errors_total', 'pg_ambassador_credential_expiry_seconds', 'pg_ambassador_credential_refresh_failures',
    'pg_ambassador_tls_reloads_total', 'pg_ambassador_config_reloads_total',
    'pg_ambassador_client_bytes_received_total', 'pg_ambassador_client_bytes_sent_total',
    'process_cpu_seconds_total', 'process_resident_memory_bytes',
  ];
  assert.deepEqual(required.filter((name) => !used.has(name)), []);
  for (const metric of ['pg_ambassador_query_duration_seconds', 'pg_ambassador_transaction_duration_seconds']) {
    for (const q of ['0.5', '0.95', '0.99']) {
      assert.ok(
        panelExprs().some((expr) => expr.includes(`histogram_quantile(${q},`) && expr.includes(`${metric}_bucket`) && /by \(le, route\)/.test(expr)),
        `p${Number(q) * 100} of ${metric} by route`,
      );
    }
  }
  assert.ok(panelExprs().some((expr) => expr.includes('histogram_quantile(0.99,') && expr.includes('pg_ambassador_pool_wait_seconds_bucket')), 'pool wait p99');
  assert.ok(panelExprs().some((expr) => /sum by \(route\) \(rate\(pg_ambassador_transactions_total/.test(expr)), 'transactions/s by route');
});

test('panels have unique ids, known types, titles, and do not overlap on the grid', () => {
  const panels = allPanels();
  const ids = panels.map((panel) => panel.id);
  assert.ok(ids.every((id) => Number.isInteger(id)), 'every panel has an integer id');
  assert.equal(new Set(ids).size, ids.length, `duplicate panel ids: ${ids.join(',')}`);
  const cells = new Map<string, string>();
  for (const panel of panels) {
    assert.ok(['row', 'timeseries', 'stat', 'table'].includes(panel.type), `${panel.title}: ${panel.type}`);
    assert.ok(panel.title && panel.title.length > 0, `panel ${panel.id} needs a title`);
    const pos = panel.gridPos;
    assert.ok(pos, `${panel.title} has no gridPos`);
    assert.ok(pos.x >= 0 && pos.w > 0 && pos.x + pos.w <= 24, `${panel.title} fits in 24 columns`);
    for (let y = pos.y; y < pos.y + pos.h; y++) {
      for (let x = pos.x; x < pos.x + pos.w; x++) {
        const other = cells.get(`${x},${y}`);
        assert.equal(other, undefined, `${panel.title} overlaps ${other}`);
        cells.set(`${x},${y}`, panel.title);
      }
    }
    if (panel.type !== 'row') {
      const refIds = (panel.targets ?? []).map((target) => target.refId);
      assert.ok(refIds.length > 0, `${panel.title} queries nothing`);
      assert.equal(new Set(refIds).size, refIds.length, `${panel.title}: duplicate refIds`);
    }
  }
});

test('Grafana 10+ import: schemaVersion 39, a DS_PROMETHEUS input, datasource and instance variables', () => {
  assert.equal(dashboard.schemaVersion, 39);
  assert.ok(dashboard.title && dashboard.uid);
  const input = dashboard.__inputs?.find((entry) => entry.name === 'DS_PROMETHEUS');
  assert.deepEqual(input && { type: input.type, pluginId: input.pluginId }, { type: 'datasource', pluginId: 'prometheus' });
  const datasource = dashboard.templating.list.find((variable) => variable.name === 'datasource');
  assert.ok(datasource, 'a datasource variable');
  assert.equal(datasource.type, 'datasource');
  assert.equal(datasource.query, 'prometheus');
  assert.equal(datasource.current?.value, '${DS_PROMETHEUS}');
  const instance = dashboard.templating.list.find((variable) => variable.name === 'instance');
  assert.ok(instance, 'an instance variable');
  assert.equal(instance.type, 'query');
  assert.equal(queryText(instance.query), 'label_values(pg_ambassador_build_info, instance)');
  assert.equal(instance.datasource?.uid, '${datasource}');
});

test('every query goes through the datasource variable and filters by instance', () => {
  for (const panel of allPanels().filter((p) => p.type !== 'row')) {
    assert.equal(panel.datasource?.uid, '${datasource}', `${panel.title} datasource`);
    for (const target of panel.targets ?? []) {
      assert.equal(target.datasource?.uid, '${datasource}', `${panel.title} ${target.refId} datasource`);
      const selectors = target.expr?.match(METRIC_NAME) ?? [];
      assert.ok(selectors.length > 0, `${panel.title} ${target.refId} queries no metric`);
      // Each metric selector carries the instance filter.
      const filtered = target.expr?.match(/\b(?:pg_ambassador|process|nodejs)_[a-z0-9_]*[a-z0-9]\{instance=~"\$instance"/g) ?? [];
      assert.equal(filtered.length, selectors.length, `${panel.title} ${target.refId}: ${target.expr}`);
    }
  }
});
