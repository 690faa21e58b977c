/**
 * The worker's HTTP endpoint for Kubernetes probes and Prometheus: `/healthz`
 * answers 200 while the process runs, `/readyz` while the worker is polling
 * Temporal, `/metrics` the backup and drill metrics (src/metrics.ts) when a
 * source is given. Off unless OPSFLOW_HEALTH_PORT is set.
 */
import { createServer, type Server } from 'node:http';
import type { Worker } from '@temporalio/worker';
import type { MetricsSource } from './metrics.ts';
import { errorMessage } from './errors.ts';
import { redact } from './secrets.ts';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

export function serveHealth(worker: Worker, port: number, options: { metrics?: MetricsSource } = {}): Server {
  const server = createServer((req, res) => {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else if (path === '/readyz') {
      const ready = worker.getState() === 'RUNNING';
      res.writeHead(ready ? 200 : 503).end(`${worker.getState().toLowerCase()}\n`);
    } else if (path === '/metrics' && options.metrics) {
      options.metrics.render().then(
        (text) => res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
        (err) => res.writeHead(500, { 'content-type': 'text/plain' }).end(`${redact(errorMessage(err))}\n`),
      );
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(port);
  return server;
}
