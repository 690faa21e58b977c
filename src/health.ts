/**
 * The worker's health endpoint for Kubernetes probes: `/healthz` answers 200
 * while the process runs, `/readyz` while the worker is polling Temporal.
 * Off unless OPSFLOW_HEALTH_PORT is set.
 */
import { createServer, type Server } from 'node:http';
import type { Worker } from '@temporalio/worker';

export function serveHealth(worker: Worker, port: number): Server {
  const server = createServer((req, res) => {
    const ready = worker.getState() === 'RUNNING';
    if (req.url === '/healthz') {
      res.writeHead(200).end('ok\n');
    } else if (req.url === '/readyz') {
      res.writeHead(ready ? 200 : 503).end(`${worker.getState().toLowerCase()}\n`);
    } else {
      res.writeHead(404).end();
    }
  });
  server.listen(port);
  return server;
}
