/**
 * The only code that talks to Prometheus: instant queries for deploy analysis
 * (e.g. a 5xx ratio against a threshold). A query yields one number or "no
 * data"; deciding what no data means (inconclusive → ask a human) is the
 * caller's job, so this never turns it into 0. Errors are typed: a peer that is
 * down is worth retrying, a query Prometheus cannot parse is not.
 */
import { InvalidInputError, PeerRejectedError, PeerUnavailableError } from '../errors.ts';
import { redact } from '../secrets.ts';
import { networkReason } from './http.ts';

export interface PrometheusOptions {
  /** Base URL, e.g. `http://prometheus:9090` (a path prefix such as `/prom` is kept). */
  url: string;
  /** Sent with every request, e.g. `authorization`. Never logged. */
  headers?: Record<string, string>;
  /** Per request; a Prometheus that accepts but never answers counts as unavailable. */
  timeoutMs?: number;
}

/** Sample values travel as strings so that NaN and ±Inf survive JSON. */
type SampleValue = [unixSeconds: number, value: string];

/** The body of an `/api/v1/query` answer (https://prometheus.io/docs/prometheus/latest/querying/api/). */
export type PrometheusQueryResponse =
  | {
      status: 'success';
      data:
        | { resultType: 'scalar' | 'string'; result: SampleValue }
        | { resultType: 'vector'; result: { metric: Record<string, string>; value: SampleValue }[] }
        | { resultType: 'matrix'; result: { metric: Record<string, string>; values: SampleValue[] }[] };
      warnings?: string[];
    }
  | { status: 'error'; errorType: string; error: string; warnings?: string[] };

type PrometheusSuccess = Extract<PrometheusQueryResponse, { status: 'success' }>;

export interface QueryResult {
  /** undefined: no data (an empty result, or NaN such as 0/0 when nothing was requested). */
  value: number | undefined;
  raw: PrometheusSuccess;
}

const DEFAULT_TIMEOUT_MS = 30_000;

export class Prometheus {
  private readonly base: string;
  private readonly headers: Record<string, string>;
  private readonly timeoutMs: number;

  constructor(options: PrometheusOptions) {
    let url: URL;
    try {
      url = new URL(options.url);
    } catch {
      throw new InvalidInputError(`Prometheus url is not a URL: ${redact(options.url)}`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidInputError(`Prometheus url must be http(s): ${redact(options.url)}`);
    this.headers = { ...options.headers };
    // fetch refuses URLs with credentials; send them as the basic auth they stand for.
    if (url.username || url.password) {
      const user = decodeURIComponent(url.username);
      const password = decodeURIComponent(url.password);
      this.headers.authorization ??= `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;
      url.username = '';
      url.password = '';
    }
    this.base = url.toString().replace(/\/+$/, '');
    this.timeoutMs = options.timeoutMs ?? DEFAULT_TIMEOUT_MS;
  }

  /**
   * Evaluates `promql` at one instant (now, or `time`). A scalar or a single
   * series gives its value; no series gives undefined; several series are an
   * error, since a threshold needs one number (aggregate with sum/max/avg).
   * An abort through `signal` rejects with the signal's reason, as cancellation, not as an outage.
   */
  async query(promql: string, { time, signal }: { time?: Date; signal?: AbortSignal } = {}): Promise<QueryResult> {
    const raw = await this.post('/api/v1/query', { query: promql, ...(time ? { time: String(time.getTime() / 1000) } : {}) }, promql, signal);
    const { data } = raw;
    switch (data.resultType) {
      case 'scalar':
        return { value: sampleValue(data.result), raw };
      case 'vector': {
        if (data.result.length === 0) return { value: undefined, raw };
        if (data.result.length === 1) return { value: sampleValue(data.result[0]!.value), raw };
        const shown = data.result.slice(0, 3).map((s) => seriesName(s.metric)).join(', ');
        throw new InvalidInputError(
          `Prometheus query "${promql}" returned ${data.result.length} series (${shown}${data.result.length > 3 ? ', …' : ''}); ` +
            'a threshold needs one number: aggregate it, e.g. sum(...), max(...) or avg(...)',
        );
      }
      case 'matrix':
        throw new InvalidInputError(`Prometheus query "${promql}" returned a range vector; use an instant vector, e.g. wrap the [range] selector in rate(...) or avg_over_time(...)`);
      default:
        throw new InvalidInputError(`Prometheus query "${promql}" returned a ${data.resultType}, not a number`);
    }
  }

  private async post(path: string, form: Record<string, string>, promql: string, signal?: AbortSignal): Promise<PrometheusSuccess> {
    const where = `Prometheus at ${this.base}`;
    const timeout = AbortSignal.timeout(this.timeoutMs);
    let res: Response;
    let body: string;
    try {
      // POST: long queries do not hit URL length limits.
      res = await fetch(`${this.base}${path}`, {
        method: 'POST',
        headers: { ...this.headers, 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
        body: new URLSearchParams(form),
        signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
      });
      body = await res.text();
    } catch (err) {
      if (signal?.aborted) throw signal.reason;
      if (timeout.aborted) throw new PeerUnavailableError(`${where} did not answer within ${this.timeoutMs} ms`, err);
      throw new PeerUnavailableError(`${where} is unreachable: ${redact(networkReason(err))}`, err);
    }

    let parsed: PrometheusQueryResponse | undefined;
    try {
      parsed = JSON.parse(body) as PrometheusQueryResponse;
    } catch {
      parsed = undefined;
    }
    const apiError = parsed?.status === 'error' ? `${parsed.error} (${parsed.errorType})` : undefined;
    if (res.ok && parsed?.status === 'success') return parsed;

    const detail = redact(apiError ?? (body.trim().slice(0, 200) || res.statusText));
    // Something answered, but not Prometheus's API (say a login page): the URL is wrong.
    if (res.ok) throw new PeerRejectedError(`${where} answered ${path} with something other than a Prometheus API response: ${detail}`);
    // 400: the query does not parse; 422: it parses but cannot be evaluated (e.g. many-to-many matching).
    if (res.status === 400 || res.status === 422) throw new InvalidInputError(`Prometheus rejected query "${promql}": ${detail}`);
    if (res.status === 401 || res.status === 403) throw new PeerRejectedError(`${where} refused us (${res.status}): ${detail}`);
    // No Prometheus API there: a wrong URL or path prefix, which retrying will not fix.
    if (res.status === 404) throw new PeerRejectedError(`${where} has no ${path} (404): is the URL (and its path prefix) right?`);
    // 503 (query timeout, overload), other 5xx, a proxy's error page: may pass.
    throw new PeerUnavailableError(`${where} answered ${res.status}: ${detail}`);
  }
}

/** Prometheus formats NaN and infinities as Go does; JavaScript's Number() would read "+Inf" as NaN. */
function sampleValue([, text]: SampleValue): number | undefined {
  if (text === '+Inf') return Infinity;
  if (text === '-Inf') return -Infinity;
  const value = Number(text);
  return Number.isNaN(value) ? undefined : value;
}

function seriesName(metric: Record<string, string>): string {
  const { __name__: name = '', ...labels } = metric;
  return `${name}{${Object.entries(labels).map(([k, v]) => `${k}="${v}"`).join(',')}}`;
}
