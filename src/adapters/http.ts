/**
 * HTTP health probes for deploy analysis (a service's /health during a
 * rollout and its bake window). A probe that fails is a result to count
 * against a failure limit, not an exception: it reports status, latency and
 * why. Only a URL that can never work (a bad input) throws.
 */
import { InvalidInputError } from '../errors.ts';
import { redact } from '../secrets.ts';

export interface ProbeOptions {
  timeoutMs: number;
  /** Statuses that count as healthy; any 2xx by default. */
  expectStatus?: number | readonly number[];
  /** Sent with the request, e.g. a `host` or `authorization` header. */
  headers?: Record<string, string>;
  /** Cancels the probe: it then rejects with the signal's reason instead of reporting a failure. */
  signal?: AbortSignal;
}

export interface ProbeResult {
  ok: boolean;
  /** Absent when no answer came (refused, timed out, TLS error). */
  status?: number;
  /** Until the response headers, or until the failure. */
  latencyMs: number;
  /** Why it is not ok, for the run's log. */
  error?: string;
}

/** How much of an unhealthy answer's body goes into `error`: often it names the broken dependency. */
const BODY_EXCERPT_CHARS = 200;

export async function probe(url: string, options: ProbeOptions): Promise<ProbeResult> {
  const target = parseHttpUrl(url);
  const { timeoutMs, expectStatus, headers, signal } = options;
  const expected = (status: number) =>
    expectStatus === undefined ? status >= 200 && status < 300 : typeof expectStatus === 'number' ? status === expectStatus : expectStatus.includes(status);
  const timeout = AbortSignal.timeout(timeoutMs);
  const started = performance.now();
  let res: Response;
  try {
    res = await fetch(target, { headers, signal: signal ? AbortSignal.any([signal, timeout]) : timeout });
  } catch (err) {
    const latencyMs = Math.round(performance.now() - started);
    if (signal?.aborted) throw signal.reason;
    if (timeout.aborted) return { ok: false, latencyMs, error: `no answer within ${timeoutMs} ms` };
    return { ok: false, latencyMs, error: redact(networkReason(err)) };
  }
  const latencyMs = Math.round(performance.now() - started);
  if (expected(res.status)) {
    // Drained so the connection can be reused; a healthy body carries nothing we need.
    await res.body?.cancel().catch(() => undefined);
    return { ok: true, status: res.status, latencyMs };
  }
  const excerpt = await res.text().then((t) => t.trim().slice(0, BODY_EXCERPT_CHARS), () => '');
  const wanted = expectStatus === undefined ? '2xx' : [expectStatus].flat().join(' or ');
  return { ok: false, status: res.status, latencyMs, error: `status ${res.status}, expected ${wanted}${excerpt ? `: ${redact(excerpt)}` : ''}` };
}

function parseHttpUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new InvalidInputError(`probe url is not a URL: ${redact(url)}`);
  }
  if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:') throw new InvalidInputError(`probe url must be http(s): ${redact(url)}`);
  // fetch refuses URLs with credentials outright, which would look like a failing service.
  if (parsed.username || parsed.password) throw new InvalidInputError(`probe url must not carry credentials (use headers): ${redact(url)}`);
  return parsed;
}

/** fetch says only "fetch failed"; the reason (ECONNREFUSED, ENOTFOUND, a TLS error) is in its cause. */
export function networkReason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } } | undefined)?.cause;
  if (cause?.message) return cause.code && !cause.message.includes(cause.code) ? `${cause.code}: ${cause.message}` : cause.message;
  return err instanceof Error ? err.message : String(err);
}
