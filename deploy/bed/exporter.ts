/**
 * A stand-in for the application a deploy rolls out, so analysis tests can
 * make it "bad" on demand: Ready pods whose metrics say otherwise. It serves
 * `/metrics` (request counters that advance at a steady simulated rate, split
 * by an error ratio the test sets), and `/health` and `/ready` (200 or 503).
 * No traffic is really served; counters are computed from elapsed time, so the
 * rates Prometheus sees are exact and need no load generator.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface DemoAppOptions {
  /** Loopback port; any free one by default. */
  port?: number;
  /** Simulated requests per second across all status codes. */
  requestsPerSecond?: number;
  /** Share of those requests answered with 500, 0..1. */
  errorRatio?: number;
}

export interface DemoApp {
  url: string;
  /** `127.0.0.1:port`, as a Prometheus scrape target. */
  hostPort: string;
  /** From now on this share (0..1) of requests count as 500s; requests so far keep their split. */
  setErrorRatio(ratio: number): void;
  /** Whether /health and /ready answer 200 or 503. */
  setHealthy(healthy: boolean): void;
  stop(): Promise<void>;
}

export async function startDemoApp({ port = 0, requestsPerSecond = 100, errorRatio = 0 }: DemoAppOptions = {}): Promise<DemoApp> {
  checkRatio(errorRatio);
  let healthy = true;
  let ratio = errorRatio;
  // Fractional totals: flooring only at exposition keeps the long-run split exact.
  let ok = 0;
  let failed = 0;
  let countedUntil = performance.now();

  /** Books the requests since the last call under the ratio in force during that time. */
  const advance = () => {
    const now = performance.now();
    const requests = ((now - countedUntil) / 1000) * requestsPerSecond;
    countedUntil = now;
    failed += requests * ratio;
    ok += requests * (1 - ratio);
  };

  const metrics = () => {
    advance();
    return [
      '# HELP http_requests_total Requests served, by status code (simulated).',
      '# TYPE http_requests_total counter',
      `http_requests_total{code="200"} ${Math.floor(ok)}`,
      `http_requests_total{code="500"} ${Math.floor(failed)}`,
      '',
    ].join('\n');
  };

  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/metrics') {
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(metrics());
    } else if (path === '/health' || path === '/ready') {
      res.writeHead(healthy ? 200 : 503, { 'content-type': 'text/plain' }).end(healthy ? 'ok\n' : 'unhealthy\n');
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => resolve());
  });
  const hostPort = `127.0.0.1:${(server.address() as AddressInfo).port}`;

  return {
    url: `http://${hostPort}`,
    hostPort,
    setErrorRatio(next) {
      checkRatio(next);
      advance();
      ratio = next;
    },
    setHealthy(next) {
      healthy = next;
    },
    async stop() {
      // Prometheus keeps its scrape connection open; close() alone would wait for it.
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

function checkRatio(ratio: number): void {
  if (!(ratio >= 0 && ratio <= 1)) throw new RangeError(`error ratio must be within 0..1, got ${ratio}`);
}
