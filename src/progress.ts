/**
 * The CLI's live view of a run: steps as they finish, and on a terminal one
 * line that keeps updating with the running step's bytes and rate (from the
 * activity's heartbeats). Without a terminal, plain lines every few seconds.
 */
import type { WorkflowHandle } from '@temporalio/client';
import { statusQuery, type RunStatus } from '../workflows/shared.ts';
import type { Progress } from '../activities/progress.ts';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${n.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
}

function formatDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  return `${String(Math.floor(s / 60)).padStart(2, '0')}:${String(s % 60).padStart(2, '0')}`;
}

type Heartbeat = Progress & { attempt: number };

/** The running activity's latest heartbeat details (and its attempt), if it has sent any. */
export async function heartbeatOf(handle: WorkflowHandle): Promise<Heartbeat | undefined> {
  const activity = (await handle.describe()).raw.pendingActivities?.[0];
  const data = activity?.heartbeatDetails?.payloads?.[0]?.data;
  if (!data) return undefined;
  try {
    return { ...(JSON.parse(Buffer.from(data).toString('utf8')) as Progress), attempt: activity.attempt ?? 1 };
  } catch {
    return undefined;
  }
}

export function describeProgress(hb: Heartbeat, elapsedMs: number): string {
  if ('message' in hb) return hb.message;
  const moved = hb.step === 'restore' ? hb.bytesIn : hb.bytesOut;
  const rate = elapsedMs > 0 ? moved / (elapsedMs / 1000) : 0;
  const total = hb.totalBytes ? ` / ${formatBytes(hb.totalBytes)} (${Math.floor((moved / hb.totalBytes) * 100)} %)` : '';
  const read = hb.step === 'dump' ? `${formatBytes(hb.bytesIn)} read → ` : '';
  return `${read}${formatBytes(moved)}${total}  ${formatBytes(rate)}/s`;
}

/**
 * Follows a run until it closes, printing steps and progress. Calls
 * `onStatus` on every poll (the restore command uses it to ask for approval).
 */
export async function followRun(
  handle: WorkflowHandle,
  options: { out?: NodeJS.WriteStream; onStatus?: (s: RunStatus) => Promise<void> | void; intervalMs?: number } = {},
): Promise<void> {
  const out = options.out ?? process.stderr;
  const live = out.isTTY === true;
  const printed = new Set<string>();
  const started = Date.now();
  let stepStarted = Date.now();
  let currentStep = '';
  let lastPlain = 0;
  let liveLine = false;
  const clearLive = () => {
    if (liveLine) out.write('\r\x1b[K');
    liveLine = false;
  };

  for (;;) {
    const description = await handle.describe();
    const closed = description.status.name !== 'RUNNING';
    const status = await handle.query(statusQuery).catch(() => undefined);
    if (status) {
      for (const [i, step] of status.steps.entries()) {
        const id = `${i}:${step.state}`;
        if (step.state === 'running') {
          if (currentStep !== `${i}`) {
            currentStep = `${i}`;
            stepStarted = Date.now();
          }
          continue;
        }
        if (printed.has(id)) continue;
        printed.add(id);
        clearLive();
        const mark = { done: '✔', failed: '✖', skipped: '–', compensated: '↺', running: '…' }[step.state];
        out.write(`${mark} ${step.name}${step.detail ? `  ${step.detail}` : ''}\n`);
      }
      await options.onStatus?.(status);
    }
    if (closed) {
      clearLive();
      return;
    }
    const hb = await heartbeatOf(handle).catch(() => undefined);
    const phase = status?.phase ?? 'starting';
    const line = `… ${phase}  ${hb ? describeProgress(hb, Date.now() - stepStarted) : ''}  ${formatDuration(Date.now() - started)}`;
    if (live) {
      out.write(`\r\x1b[K${line.slice(0, (out.columns ?? 100) - 1)}`);
      liveLine = true;
    } else if (Date.now() - lastPlain > 10_000 && hb) {
      out.write(`${line}\n`);
      lastPlain = Date.now();
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 1000));
  }
}
