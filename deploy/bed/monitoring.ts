/**
 * Real Prometheus (and optionally Alertmanager) for tests of deploy analysis
 * and alert-started runs: throwaway processes on free loopback ports with
 * their storage under `dir`, Debian's binaries (deploy/bed/install.sh).
 * Intervals default to 1 s so a changed metric shows up in seconds, not
 * minutes. Separate from bed.ts: only the tests that need it pay for it.
 */
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { stringify } from 'yaml';
import { freePorts, startDaemon, stopDaemon, waitFor, type Daemon } from './daemons.ts';

export interface MonitoringOptions {
  /** Configs, storage and logs go here (`prometheus.log`, `alertmanager.log`). */
  dir: string;
  /** `host:port` targets scraped at `/metrics` under job "app". */
  scrapeTargets?: string[];
  scrapeIntervalSeconds?: number;
  evaluationIntervalSeconds?: number;
  /** A Prometheus rule file (YAML text: `groups: [...]`). */
  rules?: string;
  /** Run an Alertmanager that Prometheus sends its alerts to. Implied by `webhookUrl`. */
  alertmanager?: boolean;
  /** Alertmanager's receiver: every notification (firing and resolved) is POSTed here. */
  webhookUrl?: string;
  /** Alertmanager's group_wait: how long it holds a new alert group before notifying. */
  groupWaitSeconds?: number;
}

export interface Monitoring {
  prometheusUrl: string;
  alertmanagerUrl?: string;
  /**
   * Milliseconds from start until each process answered /-/ready, and until
   * Prometheus scraped its targets and knew its Alertmanager (`configured`: its
   * service discovery passes changes on at most every 5 s, whatever the intervals).
   */
  readyMs: { prometheus: number; alertmanager?: number; configured: number };
  /** Rewrites Prometheus's config with new targets and/or rules and reloads it; resolves once it is in force. */
  reload(changes?: { scrapeTargets?: string[]; rules?: string }): Promise<void>;
  stop(): Promise<void>;
}

const STOP_GRACE_MS = 5_000;

/** The first of `names` on PATH (Debian calls Alertmanager prometheus-alertmanager, upstream alertmanager). */
function binary(envVar: string, names: string[]): string {
  const fromEnv = process.env[envVar];
  if (fromEnv) return fromEnv;
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of names) if (dir && existsSync(join(dir, name))) return join(dir, name);
  }
  throw new Error(`none of ${names.join(', ')} on PATH (set ${envVar}, or run 'bash deploy/bed/install.sh')`);
}

async function isReady(url: string): Promise<boolean> {
  return (await fetch(`${url}/-/ready`, { signal: AbortSignal.timeout(1_000) })).ok;
}

/** Throwaway: series or silences left by an earlier start over the same `dir` would mislead a test. */
function freshDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
  mkdirSync(path, { recursive: true });
}

async function apiData<T>(url: string): Promise<T> {
  const res = await fetch(url, { signal: AbortSignal.timeout(1_000) });
  if (!res.ok) throw new Error(`${url}: ${res.status}`);
  return ((await res.json()) as { data: T }).data;
}

/** Whether Prometheus scrapes exactly `targets` (up or not) and, if asked, sends to `alertmanagerUrl`. */
async function configInForce(prometheusUrl: string, targets: readonly string[], alertmanagerUrl: string | undefined): Promise<boolean> {
  const { activeTargets } = await apiData<{ activeTargets: { labels: Record<string, string> }[] }>(`${prometheusUrl}/api/v1/targets?state=active`);
  const scraped = activeTargets.map((t) => t.labels.instance).sort();
  if (JSON.stringify(scraped) !== JSON.stringify([...targets].sort())) return false;
  if (!alertmanagerUrl) return true;
  const { activeAlertmanagers } = await apiData<{ activeAlertmanagers: { url: string }[] }>(`${prometheusUrl}/api/v1/alertmanagers`);
  return activeAlertmanagers.some((am) => am.url.startsWith(alertmanagerUrl));
}

export async function startMonitoring(options: MonitoringOptions): Promise<Monitoring> {
  const dir = resolve(options.dir);
  mkdirSync(dir, { recursive: true });
  const scrapeInterval = `${options.scrapeIntervalSeconds ?? 1}s`;
  const evaluationInterval = `${options.evaluationIntervalSeconds ?? 1}s`;
  const withAlertmanager = options.alertmanager === true || options.webhookUrl !== undefined;
  const ports = await freePorts(['prometheus', 'alertmanager']);
  const prometheusUrl = `http://127.0.0.1:${ports.prometheus}`;
  const alertmanagerUrl = withAlertmanager ? `http://127.0.0.1:${ports.alertmanager}` : undefined;

  const configFile = join(dir, 'prometheus.yml');
  const rulesFile = join(dir, 'rules.yml');
  let state = { scrapeTargets: options.scrapeTargets ?? [], rules: options.rules };
  const writePrometheusConfig = () => {
    if (state.rules !== undefined) writeFileSync(rulesFile, state.rules);
    const config = {
      // scrape_timeout defaults to 10 s, which Prometheus refuses above a shorter interval.
      global: { scrape_interval: scrapeInterval, scrape_timeout: scrapeInterval, evaluation_interval: evaluationInterval },
      rule_files: state.rules === undefined ? [] : [rulesFile],
      alerting: alertmanagerUrl ? { alertmanagers: [{ static_configs: [{ targets: [`127.0.0.1:${ports.alertmanager}`] }] }] } : undefined,
      scrape_configs: state.scrapeTargets.length ? [{ job_name: 'app', static_configs: [{ targets: state.scrapeTargets }] }] : [],
    };
    writeFileSync(configFile, stringify(config));
  };
  writePrometheusConfig();

  const daemons: Daemon[] = [];
  const readyMs: Monitoring['readyMs'] = { prometheus: 0, configured: 0 };
  const started = performance.now();
  const stop = () => Promise.all(daemons.map((d) => stopDaemon(d, STOP_GRACE_MS))).then(() => undefined);
  try {
    if (alertmanagerUrl) {
      const amConfig = join(dir, 'alertmanager.yml');
      const groupWait = `${options.groupWaitSeconds ?? 1}s`;
      const receiver = options.webhookUrl ? { name: 'webhook', webhook_configs: [{ url: options.webhookUrl, send_resolved: true }] } : { name: 'nowhere' };
      writeFileSync(amConfig, stringify({
        // group_interval short too: a resolved alert or a second one in the group goes out in seconds.
        route: { receiver: receiver.name, group_by: ['alertname'], group_wait: groupWait, group_interval: groupWait, repeat_interval: '1h' },
        receivers: [receiver],
      }));
      const storage = join(dir, 'alertmanager-data');
      freshDir(storage);
      startDaemon('alertmanager', binary('OPSFLOW_ALERTMANAGER_BIN', ['prometheus-alertmanager', 'alertmanager']), [
        `--config.file=${amConfig}`,
        `--storage.path=${storage}`,
        `--web.listen-address=127.0.0.1:${ports.alertmanager}`,
        // Empty: no gossip listener on 9094 (a single instance needs no cluster).
        '--cluster.listen-address=',
      ], { dir, daemons, reportAs: 'monitoring' });
    }
    const storage = join(dir, 'prometheus-data');
    freshDir(storage);
    startDaemon('prometheus', binary('OPSFLOW_PROMETHEUS_BIN', ['prometheus']), [
      `--config.file=${configFile}`,
      `--storage.tsdb.path=${storage}`,
      '--storage.tsdb.retention.time=1d',
      `--web.listen-address=127.0.0.1:${ports.prometheus}`,
      // For reload(): POST /-/reload.
      '--web.enable-lifecycle',
    ], { dir, daemons, reportAs: 'monitoring' });

    const timed = async (what: string, url: string) => {
      await waitFor(`${what} ready`, () => isReady(url), { daemons });
      return Math.round(performance.now() - started);
    };
    [readyMs.prometheus, readyMs.alertmanager] = await Promise.all([
      timed('Prometheus', prometheusUrl),
      alertmanagerUrl ? timed('Alertmanager', alertmanagerUrl) : undefined,
    ]);
    await waitFor('Prometheus to take up its config', () => configInForce(prometheusUrl, state.scrapeTargets, alertmanagerUrl), { daemons });
    readyMs.configured = Math.round(performance.now() - started);
  } catch (err) {
    await stop();
    throw err;
  }

  return {
    prometheusUrl,
    alertmanagerUrl,
    readyMs,
    async reload(changes = {}) {
      state = { scrapeTargets: changes.scrapeTargets ?? state.scrapeTargets, rules: changes.rules ?? state.rules };
      writePrometheusConfig();
      // Prometheus answers once the reload is done, with 500 and the reason if the config was refused.
      const res = await fetch(`${prometheusUrl}/-/reload`, { method: 'POST' });
      if (!res.ok) throw new Error(`Prometheus refused the new config (${res.status}): ${(await res.text()).trim()}`);
      // Rules are in force now; targets follow at discovery's next 5 s tick.
      const targets = state.scrapeTargets;
      await waitFor('Prometheus to take up the new targets', () => configInForce(prometheusUrl, targets, alertmanagerUrl), { daemons, timeoutMs: 30_000 });
    },
    stop,
  };
}
