/**
 * Deploy analysis against a real Prometheus and Alertmanager
 * (deploy/bed/monitoring.ts) scraping the demo app (deploy/bed/exporter.ts):
 * a query follows the app's error ratio within seconds; no data, bad queries
 * and a Prometheus that is down come back typed, so the caller can tell
 * inconclusive from retry from stop; health probes report rather than throw;
 * an alert rule on the ratio reaches a webhook through Alertmanager.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from '../../deploy/bed/daemons.ts';
import { startDemoApp, type DemoApp } from '../../deploy/bed/exporter.ts';
import { startMonitoring, type Monitoring } from '../../deploy/bed/monitoring.ts';
import { probe } from '../../src/adapters/http.ts';
import { Prometheus } from '../../src/adapters/prometheus.ts';
import { InvalidInputError, PeerRejectedError, PeerUnavailableError } from '../../src/errors.ts';

const ERROR_RATIO = 'sum(rate(http_requests_total{code=~"5.."}[5s])) / sum(rate(http_requests_total[5s]))';
const RULES = `
groups:
  - name: demo
    rules:
      - alert: HighErrorRatio
        expr: ${ERROR_RATIO} > 0.2
        labels: { severity: page, service: demo }
        annotations: { summary: '5xx ratio {{ $value }}' }
`;

/** What Alertmanager's webhook receiver POSTs (the fields we read). */
interface WebhookMessage {
  status: 'firing' | 'resolved';
  alerts: { status: string; labels: Record<string, string>; annotations: Record<string, string> }[];
}

let dir: string;
let app: DemoApp;
let monitoring: Monitoring;
let prometheus: Prometheus;
let webhook: HttpServer;
const delivered: { at: number; message: WebhookMessage }[] = [];
const silent: { server: ReturnType<typeof createTcpServer>; sockets: Set<Socket> } = { server: createTcpServer(), sockets: new Set() };

/** Reads until `done`; returns the last value and how long it took. */
async function until<T>(what: string, timeoutMs: number, read: () => Promise<T>, done: (v: T) => boolean): Promise<{ value: T; ms: number }> {
  const started = Date.now();
  for (;;) {
    const value = await read();
    if (done(value)) return { value, ms: Date.now() - started };
    if (Date.now() - started > timeoutMs) throw new Error(`${what} not reached within ${timeoutMs / 1000} s: ${JSON.stringify(value)}`);
    await sleep(250);
  }
}

const errorRatio = async () => (await prometheus.query(ERROR_RATIO)).value;

before(async () => {
  dir = mkdtempSync(join(process.env.OPSFLOW_TEST_DIR ?? tmpdir(), 'monitoring-'));
  webhook = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      delivered.push({ at: Date.now(), message: JSON.parse(body) as WebhookMessage });
      res.end();
    });
  });
  await new Promise<void>((r) => webhook.listen(0, '127.0.0.1', r));
  // Accepts connections and never answers: a hung peer.
  silent.server.on('connection', (s: Socket) => silent.sockets.add(s));
  await new Promise<void>((r) => silent.server.listen(0, '127.0.0.1', r));

  app = await startDemoApp();
  const started = Date.now();
  monitoring = await startMonitoring({
    dir,
    scrapeTargets: [app.hostPort],
    webhookUrl: `http://127.0.0.1:${(webhook.address() as AddressInfo).port}/alerts`,
  });
  console.log(`monitoring up in ${Date.now() - started} ms: ready ${JSON.stringify(monitoring.readyMs)} (${dir})`);
  prometheus = new Prometheus({ url: monitoring.prometheusUrl });
});

after(async () => {
  await monitoring?.stop();
  await app?.stop();
  webhook?.closeAllConnections();
  await new Promise((r) => webhook?.close(r));
  for (const s of silent.sockets) s.destroy();
  await new Promise((r) => silent.server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('Prometheus adapter (real Prometheus scraping the demo app)', () => {
  it('sees the app: up, at its simulated request rate', async () => {
    const up = await until('target up', 15_000, async () => (await prometheus.query(`up{instance="${app.hostPort}"}`)).value, (v) => v === 1);
    const rate = await until('steady request rate', 15_000, async () => (await prometheus.query('sum(rate(http_requests_total[5s]))')).value, (v) => v !== undefined && Math.abs(v - 100) < 5);
    console.log(`scraped: up after ${up.ms} ms; rate ${rate.value?.toFixed(1)} req/s after another ${rate.ms} ms`);
  });

  it('follows a changed error ratio within seconds', async () => {
    app.setErrorRatio(0);
    const clean = await until('ratio 0', 15_000, errorRatio, (v) => v !== undefined && v < 0.01);
    app.setErrorRatio(0.3);
    const bad = await until('ratio 0.3', 15_000, errorRatio, (v) => v !== undefined && v >= 0.25 && v <= 0.35);
    console.log(`error ratio: ${clean.value?.toFixed(3)} at 0.0; set 0.3 → ${bad.value?.toFixed(3)} after ${bad.ms} ms`);
  });

  it('answers numbers: scalars, and ±Inf as such; NaN (0/0, nothing served) as no data', async () => {
    assert.equal((await prometheus.query('1 + 1')).value, 2);
    assert.equal((await prometheus.query('vector(1) / 0')).value, Infinity);
    assert.equal((await prometheus.query('vector(-1) / 0')).value, -Infinity);
    assert.equal((await prometheus.query('vector(0) / 0')).value, undefined);
    const then = await prometheus.query('sum(http_requests_total)', { time: new Date(Date.now() - 3_600_000) });
    assert.equal(then.value, undefined, 'an hour ago there was no app');
  });

  it('a metric that does not exist is no data (undefined), not 0', async () => {
    const missing = await prometheus.query('sum(rate(opsflow_no_such_metric_total[5s]))');
    assert.equal(missing.value, undefined);
    assert.equal(missing.raw.data.resultType, 'vector');
    assert.equal((await prometheus.query('opsflow_no_such_metric')).value, undefined);
  });

  it('several series are an error that says to aggregate', async () => {
    await assert.rejects(prometheus.query('http_requests_total'), (err: Error) => {
      assert.ok(err instanceof InvalidInputError, err.message);
      assert.match(err.message, /returned 2 series .*code="200".*aggregate/);
      return true;
    });
    await assert.rejects(prometheus.query('http_requests_total[5s]'), /range vector/);
  });

  it('a bad query is InvalidInput naming the query and Prometheus\'s parse error', async () => {
    const bad = 'sum(rate(http_requests_total[5s])';
    await assert.rejects(prometheus.query(bad), (err: Error) => {
      assert.ok(err instanceof InvalidInputError, err.message);
      assert.equal(err.retryable, false);
      assert.ok(err.message.includes(bad), err.message);
      assert.match(err.message, /parse error/);
      console.log(`bad query: ${err.message}`);
      return true;
    });
  });

  it('Prometheus down or hung is PeerUnavailable (retryable); not Prometheus at all is PeerRejected', async () => {
    const down = new Prometheus({ url: `http://127.0.0.1:${await freePort()}` });
    await assert.rejects(down.query('up'), (err: Error) => {
      assert.ok(err instanceof PeerUnavailableError, err.message);
      assert.equal(err.retryable, true);
      assert.match(err.message, /unreachable: .*ECONNREFUSED/);
      return true;
    });
    const hung = new Prometheus({ url: `http://127.0.0.1:${(silent.server.address() as AddressInfo).port}`, timeoutMs: 300 });
    await assert.rejects(hung.query('up'), (err: Error) => err instanceof PeerUnavailableError && /within 300 ms/.test(err.message));
    const notPrometheus = new Prometheus({ url: app.url });
    await assert.rejects(notPrometheus.query('up'), (err: Error) => err instanceof PeerRejectedError && /404/.test(err.message));
  });

  it('a caller\'s abort is cancellation, not an outage', async () => {
    const hung = new Prometheus({ url: `http://127.0.0.1:${(silent.server.address() as AddressInfo).port}` });
    const controller = new AbortController();
    setTimeout(() => controller.abort(new Error('activity cancelled')), 100);
    await assert.rejects(hung.query('up', { signal: controller.signal }), /activity cancelled/);
  });

  it('reload() takes up a new target', async () => {
    const second = await startDemoApp();
    try {
      await monitoring.reload({ scrapeTargets: [app.hostPort, second.hostPort] });
      const both = await until('both targets up', 15_000, async () => (await prometheus.query('count(up{job="app"} == 1)')).value, (v) => v === 2);
      console.log(`reload: second target up ${both.ms} ms after reload() returned`);
    } finally {
      await monitoring.reload({ scrapeTargets: [app.hostPort] });
      await second.stop();
    }
  });
});

describe('HTTP probe', () => {
  it('healthy → ok with status and latency', async () => {
    app.setHealthy(true);
    const r = await probe(`${app.url}/health`, { timeoutMs: 2_000 });
    assert.equal(r.ok, true);
    assert.equal(r.status, 200);
    assert.ok(r.latencyMs >= 0 && r.latencyMs < 2_000);
  });

  it('unhealthy → ok:false with status 503 and the body, no exception', async () => {
    app.setHealthy(false);
    try {
      for (const path of ['/health', '/ready']) {
        const r = await probe(`${app.url}${path}`, { timeoutMs: 2_000 });
        assert.equal(r.ok, false);
        assert.equal(r.status, 503);
        assert.match(r.error ?? '', /status 503, expected 2xx: unhealthy/);
      }
      assert.equal((await probe(`${app.url}/health`, { timeoutMs: 2_000, expectStatus: [200, 503] })).ok, true);
    } finally {
      app.setHealthy(true);
    }
  });

  it('refused and hung are reported too; only an unusable URL throws', async () => {
    const refused = await probe(`http://127.0.0.1:${await freePort()}/health`, { timeoutMs: 2_000 });
    assert.equal(refused.ok, false);
    assert.equal(refused.status, undefined);
    assert.match(refused.error ?? '', /ECONNREFUSED/);
    const hung = await probe(`http://127.0.0.1:${(silent.server.address() as AddressInfo).port}/health`, { timeoutMs: 300 });
    assert.equal(hung.ok, false);
    assert.match(hung.error ?? '', /no answer within 300 ms/);
    assert.ok(hung.latencyMs >= 250, `${hung.latencyMs}`);
    await assert.rejects(probe('not a url', { timeoutMs: 100 }), InvalidInputError);
    await assert.rejects(probe('ftp://127.0.0.1/health', { timeoutMs: 100 }), InvalidInputError);
  });
});

describe('Alertmanager', () => {
  it('an alert rule on the error ratio reaches the webhook with its labels, and resolves', async () => {
    app.setErrorRatio(0);
    await until('ratio back to 0', 15_000, errorRatio, (v) => v !== undefined && v < 0.01);
    await monitoring.reload({ rules: RULES });
    delivered.length = 0;

    const setAt = Date.now();
    app.setErrorRatio(0.3);
    const firing = await until('firing alert at the webhook', 30_000, async () => delivered.find((d) => d.message.status === 'firing'), (d) => d !== undefined);
    const alert = firing.value!.message.alerts[0]!;
    assert.equal(alert.status, 'firing');
    assert.deepEqual(alert.labels, { alertname: 'HighErrorRatio', severity: 'page', service: 'demo' });
    assert.match(alert.annotations.summary ?? '', /^5xx ratio 0\.\d+/);
    const fireMs = firing.value!.at - setAt;

    const clearedAt = Date.now();
    app.setErrorRatio(0);
    const resolved = await until('resolved alert at the webhook', 30_000, async () => delivered.find((d) => d.message.status === 'resolved'), (d) => d !== undefined);
    const resolveMs = resolved.value!.at - clearedAt;
    console.log(`alert: setErrorRatio(0.3) → firing webhook in ${fireMs} ms; setErrorRatio(0) → resolved webhook in ${resolveMs} ms`);
  });
});
