/**
 * Prometheus metrics about backups and drills, read from the catalog in S3
 * when scraped (at most every 30 s: the catalog is cached that long; ages are
 * computed at each scrape). Served by the worker as `/metrics` (src/health.ts).
 *
 *   opsflow_backup_last_success_timestamp_seconds{system}  completion of the newest complete set
 *   opsflow_backup_age_seconds{system}                     now - that (+Inf when there is no set)
 *   opsflow_backup_max_age_seconds{system}                 systems.<x>.backup.maxAgeHours, for `age > max`
 *   opsflow_drill_last_timestamp_seconds{system}           start of the newest recorded drill
 *   opsflow_drill_rpo_seconds{system}, opsflow_drill_rto_seconds{system}
 *   opsflow_drill_ok{system}                               1 when that drill met the RPO target
 *   opsflow_catalog_up{system}                             0 when the catalog could not be read
 */
import type { Systems } from './systems.ts';
import { catalogActivities } from '../activities/catalog.ts';
import { NotFoundError, errorMessage } from './errors.ts';
import { systemPrefix } from './domain/names.ts';

export const CACHE_MS = 30_000;

export interface DrillRecord {
  at: string;
  backupId?: string;
  rtoSeconds?: number;
  rpoSeconds?: number;
  rpoTargetSeconds?: number;
  ok?: boolean;
}

export interface SystemCatalogState {
  system: string;
  maxAgeSeconds: number;
  /** Unix ms of the newest complete set's completion. */
  lastBackupAt?: number;
  lastBackupId?: string;
  drill?: DrillRecord;
  /** Why the catalog could not be read, if it could not. */
  error?: string;
}

/** The newest drill record of a system (drills/<at>.json sort by time), if any. */
export async function newestDrill(systems: Systems, system: string): Promise<DrillRecord | undefined> {
  const store = systems.store(system);
  let newest: string | undefined;
  for await (const { key } of store.listKeys(`${systemPrefix(systems.s3Prefix(system), system)}drills/`)) {
    if (key.endsWith('.json') && (newest === undefined || key > newest)) newest = key;
  }
  return newest === undefined ? undefined : ((await store.getJson(newest)) as DrillRecord);
}

export async function readCatalogState(systems: Systems, system: string): Promise<SystemCatalogState> {
  const state: SystemCatalogState = { system, maxAgeSeconds: systems.get(system).backup.maxAgeHours * 3600 };
  try {
    try {
      const manifest = await catalogActivities({ systems }).findBackup({ system, backup: 'latest' });
      state.lastBackupAt = Date.parse(manifest.completedAt);
      state.lastBackupId = manifest.backupId;
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    state.drill = await newestDrill(systems, system);
  } catch (err) {
    state.error = errorMessage(err);
  }
  return state;
}

function labels(system: string): string {
  return `{system="${system.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"}`;
}

function number(n: number): string {
  if (n === Infinity) return '+Inf';
  if (n === -Infinity) return '-Inf';
  if (Number.isNaN(n)) return 'NaN';
  return String(n);
}

/** Prometheus text exposition (format 0.0.4) of the states, with ages at `now` (Unix ms). */
export function renderMetrics(states: SystemCatalogState[], now: number): string {
  const families: { name: string; help: string; samples: [string, number][] }[] = [];
  const family = (name: string, help: string, pick: (s: SystemCatalogState) => number | undefined) => {
    const samples: [string, number][] = [];
    for (const s of states) {
      const v = pick(s);
      if (v !== undefined) samples.push([s.system, v]);
    }
    families.push({ name, help, samples });
  };
  const seconds = (ms: number) => ms / 1000;
  family('opsflow_backup_last_success_timestamp_seconds', 'Completion time of the newest complete backup set (Unix seconds).', (s) =>
    s.lastBackupAt === undefined ? undefined : seconds(s.lastBackupAt),
  );
  family('opsflow_backup_age_seconds', 'Seconds since the newest complete backup set completed (+Inf when there is none).', (s) =>
    s.error !== undefined ? undefined : s.lastBackupAt === undefined ? Infinity : Math.max(0, seconds(now - s.lastBackupAt)),
  );
  family('opsflow_backup_max_age_seconds', 'Configured maximum age of the newest backup set (backup.maxAgeHours).', (s) => s.maxAgeSeconds);
  family('opsflow_drill_last_timestamp_seconds', 'Start time of the newest recorded restore drill (Unix seconds).', (s) => {
    const at = s.drill ? Date.parse(s.drill.at) : NaN;
    return Number.isNaN(at) ? undefined : seconds(at);
  });
  family('opsflow_drill_rpo_seconds', 'Recovery point of the newest drill: age of the set it restored, in seconds.', (s) => s.drill?.rpoSeconds);
  family('opsflow_drill_rto_seconds', 'Recovery time of the newest drill: its restore and checks, in seconds.', (s) => s.drill?.rtoSeconds);
  family('opsflow_drill_ok', '1 when the newest drill passed (restored, checked, within the RPO target), else 0.', (s) =>
    s.drill === undefined ? undefined : s.drill.ok === false ? 0 : 1,
  );
  family('opsflow_catalog_up', '1 when the backup catalog in S3 could be read at the last refresh, else 0.', (s) => (s.error === undefined ? 1 : 0));

  const lines: string[] = [];
  for (const f of families) {
    lines.push(`# HELP ${f.name} ${f.help}`, `# TYPE ${f.name} gauge`);
    for (const [system, value] of f.samples) lines.push(`${f.name}${labels(system)} ${number(value)}`);
  }
  return `${lines.join('\n')}\n`;
}

export interface MetricsSource {
  /** The metrics text; reads the catalog when the cached copy is older than the cache time. */
  render(): Promise<string>;
}

/** Metrics over every configured system's catalog, cached `cacheMs` (concurrent scrapes share one read). */
export function catalogMetrics(systems: Systems, options: { cacheMs?: number; now?: () => number } = {}): MetricsSource {
  const cacheMs = options.cacheMs ?? CACHE_MS;
  const now = options.now ?? Date.now;
  let cached: { at: number; states: Promise<SystemCatalogState[]> } | undefined;
  return {
    async render() {
      if (!cached || now() - cached.at >= cacheMs) {
        const names = Object.keys(systems.config.systems).sort();
        cached = { at: now(), states: Promise.all(names.map((name) => readCatalogState(systems, name))) };
      }
      return renderMetrics(await cached.states, now());
    },
  };
}
