/**
 * How opsflow reaches Temporal: address, namespace and TLS/API key from the
 * environment (TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_TLS_CERT,
 * TEMPORAL_TLS_KEY, TEMPORAL_TLS_CA, TEMPORAL_API_KEY), else the config file,
 * else a local dev server. Shared by the worker, the CLI and the SDK.
 */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';

export interface TemporalTarget {
  address: string;
  namespace: string;
  taskQueue: string;
  tls?: TLSConfig | boolean;
  apiKey?: string;
}

export function temporalTarget(defaults: { address?: string; namespace?: string; taskQueue?: string } = {}): TemporalTarget {
  const env = process.env;
  const cert = env.TEMPORAL_TLS_CERT;
  const key = env.TEMPORAL_TLS_KEY;
  const ca = env.TEMPORAL_TLS_CA;
  let tls: TLSConfig | boolean | undefined;
  if (cert && key) {
    tls = {
      clientCertPair: { crt: readFileSync(cert), key: readFileSync(key) },
      serverRootCACertificate: ca ? readFileSync(ca) : undefined,
    };
  } else if (env.TEMPORAL_API_KEY || env.TEMPORAL_TLS === 'true') {
    tls = true;
  }
  return {
    address: env.TEMPORAL_ADDRESS ?? defaults.address ?? '127.0.0.1:7233',
    namespace: env.TEMPORAL_NAMESPACE ?? defaults.namespace ?? 'default',
    taskQueue: env.OPSFLOW_TASK_QUEUE ?? defaults.taskQueue ?? 'opsflow',
    tls,
    apiKey: env.TEMPORAL_API_KEY,
  };
}
