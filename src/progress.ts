/**
 * The CLI's live view of a run: steps as they finish, and on a terminal one
 * line that keeps updating with the running steps' bytes and rates (from the
 * activities' heartbeats). Without a terminal, plain lines every few seconds.
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

/** The latest heartbeat details (and attempt) of each running activity that has sent any: several while a restore stages its components at once. */
export async function heartbeatsOf(handle: WorkflowHandle): Promise<Heartbeat[]> {
  const heartbeats: Heartbeat[] = [];
  for (const activity of (await handle.describe()).raw.pendingActivities ?? []) {
    const data = activity.heartbeatDetails?.payloads?.[0]?.data;
    if (!data) continue;
    try {
      heartbeats.push({ ...(JSON.parse(Buffer.from(data).toString('utf8')) as Progress), attempt: activity.attempt ?? 1 });
    } catch {
      // not opsflow's progress: nothing to show
    }
  }
  return heartbeats;
}

/** The first running activity's latest heartbeat, if it has sent any. */
export async function heartbeatOf(handle: WorkflowHandle): Promise<Heartbeat | undefined> {
  return (await heartbeatsOf(handle))[0];
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
  /** When each activity attempt's progress was first seen, for its rate. */
  const stepStarted = new Map<string, number>();
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
        if (step.state === 'running') continue;
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
    const heartbeats = await heartbeatsOf(handle).catch(() => []);
    const since = (hb: Heartbeat) => {
      const key = `${hb.step}#${hb.attempt}`;
      if (!stepStarted.has(key)) stepStarted.set(key, Date.now());
      return Date.now() - stepStarted.get(key)!;
    };
    const progress = heartbeats.map((hb) => `${heartbeats.length > 1 ? `${hb.step}: ` : ''}${describeProgress(hb, since(hb))}`);
    const phase = status?.phase ?? 'starting';
    const line = `… ${phase}  ${progress.join('  |  ')}  ${formatDuration(Date.now() - started)}`;
    if (live) {
      out.write(`\r\x1b[K${line.slice(0, (out.columns ?? 100) - 1)}`);
      liveLine = true;
    } else if (Date.now() - lastPlain > 10_000 && heartbeats.length) {
      out.write(`${line}\n`);
      lastPlain = Date.now();
    }
    await new Promise((r) => setTimeout(r, options.intervalMs ?? 1000));
  }
}
