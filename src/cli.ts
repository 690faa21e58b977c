/**
 * The opsflow CLI.
 *
 *   opsflow dev [--once]                      local bed + Temporal (with UI) + worker
 *   opsflow backup <system> [--dry-run] [--detach]
 *   opsflow backups list <system>             the catalog (also: opsflow list <system>)
 *   opsflow backups describe <system> <backup> [--json]
 *   opsflow backups pin|unpin <system> <backup> [--reason TEXT]
 *   opsflow backups verify <system> [<backup>]  deep verification (the verify workflow)
 *   opsflow restore <system> [--backup REF] [--component NAME]… [--from SYSTEM] [--into DB] [--yes] [--dry-run]
 *   opsflow recover <system> [--backup REF] [--from SYSTEM] [--yes] [--dry-run] [--no-traffic-switch]
 *   opsflow drill <system> [--backup REF] [--into SCRATCH-SYSTEM]
 *   opsflow retention <system> [--dry-run]
 *   opsflow schedules apply [--dry-run] | list | pause|unpause <name> [--reason] | trigger <name>
 *   opsflow deploy <system> --image CONTAINER=IMAGE [--image …] [--cause TEXT] [--skip-checks] [--bake SECONDS] [--detach]
 *   opsflow pause|resume|abort|promote <workflowId> [--by NAME]   deploy controls
 *   opsflow maintenance <system> --reason TEXT [--duration 30m] [--scale-to N] [--detach]
 *   opsflow end <workflowId> [--by NAME]      close a maintenance window early
 *   opsflow status <workflowId> [--follow]
 *   opsflow approve|reject <workflowId> [--by NAME] [--comment TEXT]
 *   opsflow cancel <workflowId>
 *
 * REF is latest, latest-verified, a date (YYYY-MM-DD: the newest set of that
 * day or before) or a backup ID. Catalog commands (list, describe, pin) read
 * S3 directly with the config's credentials; the others start workflows and
 * follow them. Common: --config PATH (else $OPSFLOW_CONFIG, else
 * ./opsflow.yaml), --json (the raw result instead of the report). While
 * `opsflow dev` runs, other commands find its bed through .opsflow/dev/env.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createInterface } from 'node:readline/promises';
import { userInfo } from 'node:os';
import { configPath, getSystem, loadConfig, resolveSetting, type Config } from './config.ts';
import { ConfigError, innermostMessage, InvalidInputError, OpsflowError } from './errors.ts';
import { OpsflowClient } from './client.ts';
import { temporalTarget } from './temporal.ts';
import { followRun, formatBytes } from './progress.ts';
import { Systems } from './systems.ts';
import { catalogActivities, type BackupSummary, type Verification } from '../activities/catalog.ts';
import { DEV_DIR } from '../deploy/bed/bed.ts';
import { redact } from './secrets.ts';
import { backupPrefix, PINNED_FILE, VERIFIED_FILE } from './domain/names.ts';
import { componentRawBytes, componentStoredBytes, storedBytesOf, type Component, type Manifest } from './domain/manifest.ts';
import { applySchedules, listSchedules, scheduleHandle, scheduleId } from './schedules.ts';
import type {
  BackupResult,
  DrillResult,
  RestorePlan,
  RestoreResult,
  RetentionResult,
  RunStatus,
  SetRestorePlan,
  SetRestoreResult,
  VerifyResult,
} from '../workflows/shared.ts';

const USAGE = `usage:
  opsflow dev [--once]
  opsflow backup <system> [--dry-run] [--detach]
  opsflow backups list <system> [--json]
  opsflow backups describe <system> <backup> [--json]
  opsflow backups pin|unpin <system> <backup> [--reason TEXT]
  opsflow backups verify <system> [<backup>] [--detach]
  opsflow restore <system> [--backup REF] [--component NAME]… [--from SYSTEM] [--into DB] [--yes] [--dry-run] [--detach]
  opsflow recover <system> [--backup REF] [--from SYSTEM] [--yes] [--dry-run] [--no-traffic-switch] [--detach]
  opsflow drill <system> [--backup REF] [--into SCRATCH-SYSTEM] [--detach]
  opsflow retention <system> [--dry-run] [--detach]
  opsflow schedules apply [--dry-run] | list | pause <name> [--reason TEXT] | unpause <name> | trigger <name>
  opsflow deploy <system> --image CONTAINER=IMAGE [--image …] [--cause TEXT] [--skip-checks] [--bake SECONDS] [--detach]
  opsflow pause|resume|abort|promote <workflowId> [--by NAME]
  opsflow maintenance <system> --reason TEXT [--duration 30m] [--scale-to N] [--detach]
  opsflow end <workflowId> [--by NAME]
  opsflow status <workflowId> [--follow]
  opsflow approve|reject <workflowId> [--by NAME] [--comment TEXT]
  opsflow cancel <workflowId>
REF: latest (default), latest-verified, YYYY-MM-DD (newest set of that day or before) or a backup ID
options: --config PATH, --json (raw result instead of the report)`;

/** While `opsflow dev` runs, its addresses are in .opsflow/dev/env; explicit env wins. */
function loadDevEnv(): void {
  const file = join(DEV_DIR, 'env');
  if (process.env.TEMPORAL_ADDRESS || !existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const at = line.indexOf('=');
    if (at > 0) process.env[line.slice(0, at)] ??= line.slice(at + 1);
  }
}

/** The config if there is one; the CLI checks system names against it before starting anything. */
function configIfPresent(explicit?: string): Config | undefined {
  const path = configPath(explicit);
  if (!explicit && !process.env.OPSFLOW_CONFIG && !existsSync(path)) return undefined;
  return loadConfig(path);
}

async function connect(config: Config | undefined): Promise<OpsflowClient> {
  const t = config?.temporal;
  return OpsflowClient.connect(
    temporalTarget({
      address: t?.address === undefined ? undefined : resolveSetting(t.address, 'temporal.address'),
      namespace: t?.namespace,
      taskQueue: t?.taskQueue,
    }),
  );
}

function one(positionals: string[], what: string): string {
  const value = positionals[0];
  if (!value) throw new InvalidInputError(`missing <${what}>\n${USAGE}`);
  return value;
}

// ---------------------------------------------------------------- formatting

/** "3d 4h", "2h 05m", "4m 10s", "12s". */
export function formatAge(totalSeconds: number): string {
  const s = Math.max(0, Math.round(totalSeconds));
  const d = Math.floor(s / 86400);
  const h = Math.floor((s % 86400) / 3600);
  const m = Math.floor((s % 3600) / 60);
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${String(m).padStart(2, '0')}m`;
  if (m > 0) return `${m}m ${String(s % 60).padStart(2, '0')}s`;
  return `${s}s`;
}

/** ISO time to the second. */
function at(iso: string | Date | undefined): string {
  if (iso === undefined) return '-';
  const text = typeof iso === 'string' ? iso : iso.toISOString();
  return text.replace(/\.\d+Z$/, 'Z');
}

/** Columns padded to their widest cell, two spaces apart; the last column unpadded. */
export function table(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, cell.length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd()).join('\n') + '\n';
}

const count = (n: number) => n.toLocaleString('en-US');

function isSetPlan(plan: RestorePlan | SetRestorePlan): plan is SetRestorePlan {
  return 'components' in plan;
}

/** What a plan will do, for the approval prompt and dry runs. */
export function describePlan(plan: RestorePlan | SetRestorePlan, procedure: string = 'restore'): string {
  if (!isSetPlan(plan)) {
    const what = plan.mode === 'into' ? `restore into a new database "${plan.target}"` : `replace database "${plan.target}"`;
    return (
      `Restore plan: ${what} with backup ${plan.backupId} (completed ${at(plan.backupCompletedAt)}; ${formatBytes(plan.storedBytes)} stored, ${count(plan.tables)} tables, ${count(plan.rows)} rows).\n` +
      (plan.retired ? `The current database is kept as "${plan.retired}".\n` : '')
    );
  }
  const title = procedure === 'disasterRecovery' ? 'Disaster recovery plan' : 'Restore plan';
  const source = plan.from === plan.target ? '' : ` of system "${plan.from}"`;
  const rows = plan.components.map((c) => [
    `  ${c.name}`,
    c.kind,
    `${formatBytes(c.storedBytes)} stored`,
    `${formatBytes(c.rawBytes)} raw${c.inPod ? '  (written through its pod)' : ''}`,
  ]);
  let text =
    `${title}: overwrite the live data of "${plan.target}" with backup ${plan.backupId}${source}\n` +
    `  completed ${at(plan.backupCompletedAt)}, ${formatAge(plan.rpoSeconds)} ago (RPO: writes after that are lost); ${formatBytes(plan.storedBytes)} stored\n` +
    `Components (${plan.components.length}):\n` +
    table(rows);
  if (plan.workloads?.length) text += `Workloads scaled to 0 while the data is swapped: ${plan.workloads.join(', ')}\n`;
  text += `Each component is staged and checked before anything live changes; a failure puts back what was swapped.\n`;
  return text;
}

function componentDetail(c: Component): string {
  switch (c.kind) {
    case 'postgres': {
      const rows = Object.values(c.rowCounts).reduce((a, b) => a + b, 0);
      const split = c.dataParts ? `; schema and rows in ${c.dataParts.length} parts, restored in parallel` : '';
      return `database ${c.database}, PostgreSQL ${c.serverVersion}, ${count(Object.keys(c.rowCounts).length)} tables, ${count(rows)} rows${split}`;
    }
    case 'redis':
      return `${c.mode}, db ${c.db}, ${count(c.keys)} keys${c.rdbVersion !== undefined ? `, RDB v${c.rdbVersion}` : ''}${c.deepChecked ? ', checked by redis-check-rdb' : ''}`;
    case 'files':
      return `${c.source}: ${count(c.tree.files)} files, ${count(c.tree.directories)} directories, ${count(c.tree.symlinks)} symlinks, ${formatBytes(c.tree.bytes)}; tree sha256 ${c.tree.sha256.slice(0, 12)}`;
    case 'kubernetes':
      return `namespace ${c.namespace}: ${Object.entries(c.objects).map(([kind, n]) => `${n} ${kind}`).join(', ') || 'no objects'}`;
    case 'sqlite': {
      const rows = Object.values(c.rowCounts).reduce((a, b) => a + b, 0);
      return `${c.source}, SQLite ${c.sqliteVersion}, ${count(Object.keys(c.rowCounts).length)} tables, ${count(rows)} rows`;
    }
    default:
      return '';
  }
}

export function describeManifest(m: Manifest, extra: { pinned?: { by?: string; reason?: string; at?: string }; verification?: Verification } = {}): string {
  const raw = m.components.reduce((n, c) => n + componentRawBytes(c), 0);
  const took = (Date.parse(m.completedAt) - Date.parse(m.startedAt)) / 1000;
  const head = [
    ['backup', m.backupId],
    ['system', m.system],
    ['workflow', m.workflowId],
    ['started', at(m.startedAt)],
    ['completed', `${at(m.completedAt)} (took ${formatAge(took)}; ${formatAge((Date.now() - Date.parse(m.completedAt)) / 1000)} ago)`],
    ['size', `${formatBytes(storedBytesOf(m))} stored, ${formatBytes(raw)} raw`],
    ['encrypted', m.encryption ? `yes, ${m.encryption.algorithm}, data key wrapped by master key "${m.encryption.wrappedKey.keyId}"` : 'no'],
    ['pinned', extra.pinned ? `yes${extra.pinned.by ? ` by ${extra.pinned.by}` : ''}${extra.pinned.at ? ` at ${at(extra.pinned.at)}` : ''}${extra.pinned.reason ? `: ${extra.pinned.reason}` : ''}` : 'no'],
    ['verified', extra.verification ? `${at(extra.verification.verifiedAt)} by ${extra.verification.workflowId}` : 'never'],
  ];
  let text = table(head);
  text += `\ncomponents (${m.components.length}):\n`;
  for (const c of m.components) {
    text += `  ${c.name} (${c.kind})  ${formatBytes(componentStoredBytes(c))} stored, ${formatBytes(componentRawBytes(c))} raw  sha256 ${c.sha256.slice(0, 12)}…${c.encrypted ? '  encrypted' : ''}\n`;
    text += `    ${componentDetail(c)}\n`;
    text += `    ${c.key}\n`;
    for (const part of c.kind === 'postgres' ? (c.dataParts ?? []) : []) {
      const pages = part.rows ? ` in heap pages ${part.rows.fromPage} to ${part.rows.toPage === undefined ? 'the end' : part.rows.toPage - 1}` : '';
      text += `    ${part.key}  ${formatBytes(part.storedBytes)}: rows of ${part.tables.join(', ') || 'no table'}${pages}${part.rest ? ', sequences and large objects' : ''}\n`;
    }
    if (extra.verification?.components[c.name]) text += `    verified: ${extra.verification.components[c.name]}\n`;
  }
  return text;
}

export function describeBackups(backups: BackupSummary[]): string {
  const rows = [['BACKUP', 'COMPLETED', 'SIZE', 'COMPONENTS', 'ENCRYPTED', 'PINNED', 'VERIFIED']];
  for (const b of backups) {
    rows.push([b.backupId, at(b.completedAt), formatBytes(b.storedBytes), b.components.join(','), b.encrypted ? 'yes' : 'no', b.pinned ? 'pinned' : '-', b.verifiedAt ? at(b.verifiedAt) : '-']);
  }
  return table(rows);
}

function describeRestoreResult(result: RestoreResult | SetRestoreResult): string {
  if (!isSetPlan(result.plan)) {
    const r = result as RestoreResult;
    const plan = r.plan as RestorePlan;
    if (r.dryRun) return `dry run, nothing changed:\n${describePlan(plan)}`;
    return plan.mode === 'into'
      ? `restored backup ${plan.backupId} into database "${plan.target}": ${r.rowCountsVerified ?? 0} tables match the manifest\n`
      : `database "${plan.target}" replaced with backup ${plan.backupId} (${r.rowCountsVerified ?? 0} tables match the manifest; approved by ${r.approvedBy}); the previous one is kept as "${plan.retired}"\n`;
  }
  const r = result as SetRestoreResult;
  if (r.dryRun) return `dry run, nothing changed:\n${describePlan(r.plan)}`;
  let text = `restored backup ${r.plan.backupId}${r.plan.from === r.plan.target ? '' : ` of "${r.plan.from}"`} into "${r.plan.target}" (approved by ${r.approvedBy})\n`;
  text += table(Object.entries(r.restored ?? {}).map(([name, detail]) => [`  ${name}`, detail]));
  return text;
}

function describeRecovery(r: SetRestoreResult): string {
  if (r.dryRun) return `dry run, nothing changed:\n${describePlan(r.plan, 'disasterRecovery')}`;
  let text = `recovered "${r.plan.target}" from backup ${r.plan.backupId}${r.plan.from === r.plan.target ? '' : ` of "${r.plan.from}"`} (approved by ${r.approvedBy})\n`;
  text += table(Object.entries(r.restored ?? {}).map(([name, detail]) => [`  ${name}`, detail]));
  const rpo = r.rpoSeconds ?? r.plan.rpoSeconds;
  text += `RPO  ${formatAge(rpo)}  (${rpo} s: writes after ${at(r.plan.backupCompletedAt)} are not in the set)\n`;
  if (r.rtoSeconds !== undefined) text += `RTO  ${formatAge(r.rtoSeconds)}  (${r.rtoSeconds} s from the start of the run to healthy)\n`;
  if (r.health) text += describeHealth(r.health);
  text += `traffic switched: ${r.trafficSwitched ? 'yes' : 'no'}\n`;
  return text;
}

function describeHealth(health: { name: string; ok: boolean; detail: string }[]): string {
  return `health: ${health.length ? health.map((h) => `${h.name} ${h.ok ? 'ok' : 'FAILED'} (${h.detail})`).join(', ') : 'no checks configured'}\n`;
}

function describeDrill(r: DrillResult): string {
  let text = r.into ? `drill recovered backup ${r.backupId} into ${r.into} and checked it:\n` : `drill restored backup ${r.backupId} and checked it:\n`;
  text += table(Object.entries(r.components).map(([name, detail]) => [`  ${name}`, detail]));
  if (r.health) text += describeHealth(r.health);
  if (r.tornDown) text += `${r.into} emptied afterwards:\n${table(Object.entries(r.tornDown).map(([name, detail]) => [`  ${name}`, detail]))}`;
  text += `RTO  ${formatAge(r.rtoSeconds)}  (${r.rtoSeconds} s)\n`;
  text += `RPO  ${formatAge(r.rpoSeconds)}  (${r.rpoSeconds} s)${r.rpoTargetSeconds !== undefined ? `, target ${formatAge(r.rpoTargetSeconds)}: ${r.rpoSeconds <= r.rpoTargetSeconds ? 'met' : 'MISSED'}` : ''}\n`;
  return text;
}

function describeVerify(r: VerifyResult): string {
  return `backup ${r.backupId} verified (restored into scratch places and compared with its manifest):\n` + table(Object.entries(r.components).map(([name, detail]) => [`  ${name}`, detail]));
}

export function describeRetention(r: RetentionResult): string {
  let text = r.dryRun ? 'dry run: nothing deleted\n' : '';
  text += `kept (${r.keep.length}):\n`;
  text += r.keep.length ? table(r.keep.map((k) => [`  ${k.backupId}`, k.reasons.join(', ')])) : '  none\n';
  text += `${r.dryRun ? 'would delete' : 'deleted'} (${r.delete.length}):\n`;
  text += r.delete.length ? table(r.delete.map((d) => [`  ${d.backupId}`, d.reasons.join(', ')])) : '  none\n';
  if (!r.dryRun) text += `${r.deletedObjects} objects deleted, ${r.abortedUploads} incomplete uploads aborted\n`;
  return text;
}

// ---------------------------------------------------------------- running

/** Shows the plan once; on a terminal asks and answers the update, otherwise says how to. */
async function askApproval(opsflow: OpsflowClient, workflowId: string, status: RunStatus): Promise<boolean> {
  const plan = status.awaitingApproval!.plan;
  process.stderr.write(`\n${describePlan(plan, status.procedure)}`);
  if (!process.stdin.isTTY) {
    process.stderr.write(`Waiting for approval: opsflow approve ${workflowId}   (or reject)\n`);
    return true;
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  const answer = (await rl.question('Approve? [y/N] ')).trim().toLowerCase();
  rl.close();
  if (answer === 'y' || answer === 'yes') await opsflow.approve(workflowId, userInfo().username);
  else await opsflow.reject(workflowId, userInfo().username, 'declined at the CLI prompt');
  return true;
}

async function follow(opsflow: OpsflowClient, workflowId: string, options: { approvals?: boolean } = {}): Promise<unknown> {
  const handle = opsflow.temporal.workflow.getHandle(workflowId);
  let asked = false;
  await followRun(handle, {
    onStatus: async (status) => {
      if (options.approvals && status.awaitingApproval && !asked) asked = await askApproval(opsflow, workflowId, status);
    },
  });
  return handle.result();
}

/** "90s", "30m", "2h" or plain seconds. */
function parseDuration(text: string, flag: string): number {
  const m = /^(\d+)(s|m|h)?$/.exec(text.trim());
  if (!m) throw new InvalidInputError(`${flag}: expected a duration like 90s, 30m or 2h, got "${text}"`);
  return Number(m[1]) * { s: 1, m: 60, h: 3600 }[(m[2] ?? 's') as 's' | 'm' | 'h'];
}

function parse(args: string[]) {
  try {
    return parseArgs({
      args,
      allowPositionals: true,
      options: {
        config: { type: 'string' },
        'dry-run': { type: 'boolean', default: false },
        detach: { type: 'boolean', default: false },
        json: { type: 'boolean', default: false },
        backup: { type: 'string', default: 'latest' },
        component: { type: 'string', multiple: true },
        from: { type: 'string' },
        into: { type: 'string' },
        yes: { type: 'boolean', short: 'y', default: false },
        'no-traffic-switch': { type: 'boolean', default: false },
        follow: { type: 'boolean', short: 'f', default: false },
        by: { type: 'string' },
        comment: { type: 'string' },
        once: { type: 'boolean', default: false },
        reason: { type: 'string' },
        duration: { type: 'string', default: '30m' },
        'scale-to': { type: 'string' },
        image: { type: 'string', multiple: true },
        cause: { type: 'string' },
        'skip-checks': { type: 'boolean', default: false },
        bake: { type: 'string' },
      },
    });
  } catch (err) {
    throw new InvalidInputError(`${(err as Error).message}\n${USAGE}`);
  }
}

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parse(rest);
  if (command === 'dev') {
    const { runDev } = await import('./dev.ts');
    return runDev({ once: values.once });
  }
  if (!command || command === 'help' || command === '--help') {
    process.stdout.write(`${USAGE}\n`);
    return command ? 0 : 2;
  }

  loadDevEnv();
  const config = configIfPresent(values.config);
  const checkSystem = (name: string) => {
    if (config) getSystem(config, name);
    return name;
  };
  const out = (text: string) => process.stdout.write(text);
  const json = (value: unknown) => out(`${JSON.stringify(value, null, 2)}\n`);
  const by = () => values.by ?? userInfo().username;

  // The catalog lives in S3: these read it with the config's credentials, no Temporal needed.
  if (command === 'backups' && !['list', 'describe', 'pin', 'unpin', 'verify'].includes(positionals[0] ?? '')) {
    throw new InvalidInputError(`usage: opsflow backups list|describe|pin|unpin|verify <system> [<backup>]`);
  }
  const catalogCommand = command === 'list' ? 'list' : command === 'backups' && positionals[0] !== 'verify' ? positionals[0] : undefined;
  if (catalogCommand !== undefined) {
    const [system, backup] = command === 'list' ? positionals : positionals.slice(1);
    if (!system) throw new InvalidInputError(`usage: opsflow backups list|describe|pin|unpin|verify <system> [<backup>]`);
    if (!config) throw new ConfigError(`the backup catalog is read from S3 with the config's credentials: no config at ${configPath(values.config)}`);
    checkSystem(system);
    const systems = new Systems(config);
    const catalog = catalogActivities({ systems });
    switch (catalogCommand) {
      case 'list': {
        const backups = await catalog.listBackups({ system });
        if (values.json) json(backups);
        else if (backups.length === 0) out(`no complete backups of ${system}\n`);
        else out(describeBackups(backups));
        return 0;
      }
      case 'describe': {
        if (!backup) throw new InvalidInputError(`usage: opsflow backups describe <system> <backup> [--json]`);
        const manifest = await catalog.findBackup({ system, backup });
        if (values.json) {
          json(manifest);
          return 0;
        }
        const store = systems.store(system);
        const prefix = backupPrefix(systems.s3Prefix(system), system, manifest.backupId);
        const read = async <T,>(file: string) => ((await store.head(prefix + file)) ? ((await store.getJson(prefix + file)) as T) : undefined);
        out(describeManifest(manifest, { pinned: await read(PINNED_FILE), verification: await read<Verification>(VERIFIED_FILE) }));
        return 0;
      }
      case 'pin':
      case 'unpin': {
        if (!backup) throw new InvalidInputError(`usage: opsflow backups ${catalogCommand} <system> <backup> [--reason TEXT]`);
        const r = await catalog.pinBackup({ system, backup, pinned: catalogCommand === 'pin', by: by(), reason: values.reason });
        out(r.pinned ? `pinned ${r.backupId} of ${system}: retention keeps it until it is unpinned\n` : `unpinned ${r.backupId} of ${system}: retention decides about it again\n`);
        return 0;
      }
      default:
        throw new InvalidInputError(`unknown command "backups ${catalogCommand}"\n${USAGE}`);
    }
  }

  const opsflow = await connect(config);
  try {
    /** Prints where the run is, follows it unless --detach, and prints its result (raw with --json). */
    const run = async <R,>(started: { workflowId: string }, report: (result: R) => string, options: { approvals?: boolean; hint?: string } = {}) => {
      process.stderr.write(`started ${started.workflowId}${options.hint ?? ''}\n`);
      if (values.detach) return 0;
      const result = (await follow(opsflow, started.workflowId, options)) as R;
      if (values.json) json(result);
      else out(report(result));
      return 0;
    };

    switch (command) {
      case 'backup': {
        const system = checkSystem(one(positionals, 'system'));
        const started = await opsflow.startBackup({ system, dryRun: values['dry-run'] });
        process.stderr.write(`started ${started.workflowId}\n`);
        if (values.detach) return 0;
        const result = (await follow(opsflow, started.workflowId)) as BackupResult;
        if (values.json) json(result);
        else if (result.dryRun) json({ backupId: result.backupId, dryRun: true, components: result.components ?? result.plan, encryptedWith: result.encryptedWith });
        else json({ backupId: result.backupId, components: (result.manifest?.components ?? []).map((c) => ({ name: c.name, kind: c.kind, rawBytes: componentRawBytes(c), storedBytes: componentStoredBytes(c) })) });
        return 0;
      }
      case 'backups': {
        // backups verify <system> [<backup>]
        const [, system, backup] = positionals;
        if (!system) throw new InvalidInputError(`usage: opsflow backups verify <system> [<backup>]`);
        checkSystem(system);
        return await run<VerifyResult>(await opsflow.startVerify({ system, backup: backup ?? values.backup }), describeVerify);
      }
      case 'restore': {
        const system = checkSystem(one(positionals, 'system'));
        if (values.from) checkSystem(values.from);
        const started = await opsflow.startRestore({
          system,
          backup: values.backup,
          from: values.from,
          components: values.component,
          into: values.into,
          approved: values.yes,
          dryRun: values['dry-run'],
        });
        return await run<RestoreResult | SetRestoreResult>(started, describeRestoreResult, { approvals: true });
      }
      case 'recover': {
        const system = checkSystem(one(positionals, 'system'));
        if (values.from) checkSystem(values.from);
        const started = await opsflow.startDisasterRecovery({
          system,
          backup: values.backup,
          from: values.from,
          approved: values.yes,
          dryRun: values['dry-run'],
          switchTraffic: !values['no-traffic-switch'],
        });
        return await run<SetRestoreResult>(started, describeRecovery, { approvals: true });
      }
      case 'drill': {
        const system = checkSystem(one(positionals, 'system'));
        return await run<DrillResult>(await opsflow.startDrill({ system, backup: values.backup, into: values.into }), describeDrill);
      }
      case 'retention': {
        const system = checkSystem(one(positionals, 'system'));
        return await run<RetentionResult>(await opsflow.startRetention({ system, dryRun: values['dry-run'] }), describeRetention);
      }
      case 'schedules': {
        const [sub, name] = positionals;
        switch (sub) {
          case 'apply': {
            if (!config) throw new ConfigError(`schedules come from the config's schedules section: no config at ${configPath(values.config)}`);
            const summary = await applySchedules(opsflow.temporal, config, { taskQueue: opsflow.target.taskQueue, dryRun: values['dry-run'] });
            if (values.json) json(summary);
            else {
              if (values['dry-run']) out('dry run: nothing changed\n');
              for (const [what, names] of Object.entries(summary)) out(`${what.padEnd(9)} ${names.length ? names.map(scheduleId).join(', ') : '-'}\n`);
            }
            return 0;
          }
          case 'list': {
            const schedules = await listSchedules(opsflow.temporal);
            if (values.json) json(schedules);
            else if (!schedules.length) out('no opsflow schedules (create them with opsflow schedules apply)\n');
            else {
              const rows = [['SCHEDULE', 'PROCEDURE', 'SYSTEM', 'CRON', 'STATE', 'NEXT', 'LAST RUN']];
              for (const s of schedules) {
                rows.push([
                  s.id,
                  s.procedure,
                  s.system ?? '-',
                  s.cron ? `${s.cron.join(' | ')}${s.timezone && s.timezone !== 'UTC' ? ` (${s.timezone})` : ''}` : '-',
                  `${s.paused ? 'paused' : 'active'}${s.managed ? '' : ' (not managed by opsflow)'}`,
                  at(s.nextRun),
                  s.lastRun ? `${at(s.lastRun.at)} ${s.lastRun.workflowId}` : '-',
                ]);
              }
              out(table(rows));
            }
            return 0;
          }
          case 'pause':
          case 'unpause':
          case 'trigger': {
            if (!name) throw new InvalidInputError(`usage: opsflow schedules ${sub} <name>`);
            const handle = await scheduleHandle(opsflow.temporal, name);
            if (sub === 'trigger') {
              await handle.trigger();
              out(`triggered ${handle.scheduleId}: a run starts now (see opsflow schedules list, or the Temporal UI)\n`);
            } else {
              const note = `${sub}d by ${by()} with opsflow${values.reason ? `: ${values.reason}` : ''}`;
              await (sub === 'pause' ? handle.pause(note) : handle.unpause(note));
              out(`${sub}d ${handle.scheduleId}\n`);
            }
            return 0;
          }
          default:
            throw new InvalidInputError(`usage: opsflow schedules apply [--dry-run] | list | pause <name> | unpause <name> | trigger <name>`);
        }
      }
      case 'deploy': {
        const system = checkSystem(one(positionals, 'system'));
        const images = Object.fromEntries((values.image ?? []).map((spec) => {
          const eq = spec.indexOf('=');
          if (eq <= 0) throw new InvalidInputError(`--image: expected CONTAINER=IMAGE, got "${spec}"`);
          return [spec.slice(0, eq), spec.slice(eq + 1)];
        }));
        const bakeSeconds = values.bake === undefined ? undefined : parseDuration(values.bake, '--bake');
        const started = await opsflow.startDeploy({ system, images, changeCause: values.cause, skipChecks: values['skip-checks'], bakeSeconds });
        process.stderr.write(`started ${started.workflowId}; controls: opsflow pause|resume|abort|promote ${started.workflowId}\n`);
        if (values.detach) return 0;
        json(await follow(opsflow, started.workflowId));
        return 0;
      }
      case 'pause':
      case 'resume':
      case 'abort':
      case 'promote': {
        const workflowId = one(positionals, 'workflowId');
        await opsflow.controlDeploy(workflowId, command, by());
        process.stderr.write(`${command} ${workflowId} as ${by()}\n`);
        return 0;
      }
      case 'maintenance': {
        const system = checkSystem(one(positionals, 'system'));
        const scaleTo = values['scale-to'] === undefined ? undefined : Number(values['scale-to']);
        const started = await opsflow.startMaintenance({ system, reason: values.reason ?? '', durationSeconds: parseDuration(values.duration, '--duration'), scaleTo });
        process.stderr.write(`started ${started.workflowId}; close it early with: opsflow end ${started.workflowId}\n`);
        if (values.detach) return 0;
        json(await follow(opsflow, started.workflowId));
        return 0;
      }
      case 'end': {
        const workflowId = one(positionals, 'workflowId');
        await opsflow.endMaintenance(workflowId, by());
        process.stderr.write(`ended the window of ${workflowId} as ${by()}; its workloads are being scaled back\n`);
        return 0;
      }
      case 'status': {
        const workflowId = one(positionals, 'workflowId');
        if (values.follow) {
          await followRun(opsflow.temporal.workflow.getHandle(workflowId));
        }
        json(await opsflow.status(workflowId));
        return 0;
      }
      case 'approve':
      case 'reject': {
        const workflowId = one(positionals, 'workflowId');
        if (command === 'approve') await opsflow.approve(workflowId, by(), values.comment);
        else await opsflow.reject(workflowId, by(), values.comment);
        process.stderr.write(`${command === 'approve' ? 'approved' : 'rejected'} ${workflowId} as ${by()}\n`);
        return 0;
      }
      case 'cancel': {
        const workflowId = one(positionals, 'workflowId');
        await opsflow.cancel(workflowId);
        process.stderr.write(`cancellation requested for ${workflowId}; its compensations will run\n`);
        return 0;
      }
      default:
        throw new InvalidInputError(`unknown command "${command}"\n${USAGE}`);
    }
  } finally {
    await opsflow.close();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (err) => {
      process.stderr.write(`opsflow: ${redact(err instanceof OpsflowError ? err.message : innermostMessage(err))}\n`);
      process.exit(err instanceof InvalidInputError || err instanceof ConfigError ? 2 : 1);
    },
  );
}
