/**
 * The opsflow CLI.
 *
 *   opsflow dev [--once]                      local bed + Temporal (with UI) + worker
 *   opsflow backup <system> [--dry-run] [--detach]
 *   opsflow restore <system> [--backup ID|latest] [--into NAME] [--yes] [--dry-run] [--detach]
 *   opsflow backups list <system>
 *   opsflow deploy <system> --image CONTAINER=IMAGE [--image …] [--cause TEXT] [--skip-checks] [--bake SECONDS] [--detach]
 *   opsflow pause|resume|abort|promote <workflowId> [--by NAME]   deploy controls
 *   opsflow deploy <system> --image CONTAINER=IMAGE [--image …] [--cause TEXT] [--skip-checks] [--bake SECONDS] [--detach]
  opsflow pause|resume|abort|promote <workflowId> [--by NAME]
  opsflow maintenance <system> --reason TEXT [--duration 30m] [--scale-to N] [--detach]
 *   opsflow end <workflowId> [--by NAME]      close a maintenance window early
 *   opsflow status <workflowId> [--follow]
 *   opsflow approve|reject <workflowId> [--by NAME] [--comment TEXT]
 *   opsflow cancel <workflowId>
 *
 * Common: --config PATH (else $OPSFLOW_CONFIG, else ./opsflow.yaml). While
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
import { catalogActivities } from '../activities/catalog.ts';
import { DEV_DIR } from '../deploy/bed/bed.ts';
import { redact } from './secrets.ts';
import type { RunStatus } from '../workflows/shared.ts';


const USAGE = `usage:
  opsflow dev [--once]
  opsflow backup <system> [--dry-run] [--detach]
  opsflow restore <system> [--backup ID|latest] [--into NAME] [--yes] [--dry-run] [--detach]
  opsflow backups list <system>
  opsflow deploy <system> --image CONTAINER=IMAGE [--image …] [--cause TEXT] [--skip-checks] [--bake SECONDS] [--detach]
  opsflow pause|resume|abort|promote <workflowId> [--by NAME]
  opsflow maintenance <system> --reason TEXT [--duration 30m] [--scale-to N] [--detach]
  opsflow end <workflowId> [--by NAME]
  opsflow status <workflowId> [--follow]
  opsflow approve|reject <workflowId> [--by NAME] [--comment TEXT]
  opsflow cancel <workflowId>
options: --config PATH`;

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

/** Shows the plan once; on a terminal asks and answers the update, otherwise says how to. */
async function askApproval(opsflow: OpsflowClient, workflowId: string, status: RunStatus): Promise<boolean> {
  const plan = status.awaitingApproval!.plan;
  process.stderr.write(
    `\nRestore plan: replace database "${plan.target}" with backup ${plan.backupId} (${formatBytes(plan.storedBytes)} stored, ${plan.tables} tables, ${plan.rows} rows).\n` +
      `The current database is kept as "${plan.retired}".\n`,
  );
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

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      config: { type: 'string' },
      'dry-run': { type: 'boolean', default: false },
      detach: { type: 'boolean', default: false },
      backup: { type: 'string', default: 'latest' },
      into: { type: 'string' },
      yes: { type: 'boolean', short: 'y', default: false },
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

  if (command === 'backups') {
    const [sub, system] = positionals;
    if (sub !== 'list' || !system) throw new InvalidInputError(`usage: opsflow backups list <system>`);
    if (!config) throw new ConfigError(`listing backups reads S3 with the config's credentials: no config at ${configPath(values.config)}`);
    checkSystem(system);
    const backups = await catalogActivities({ systems: new Systems(config) }).listBackups({ system });
    if (backups.length === 0) process.stdout.write(`no complete backups of ${system}\n`);
    for (const b of backups) process.stdout.write(`${b.backupId}  ${b.completedAt}  ${formatBytes(b.storedBytes).padStart(10)}  ${b.components.join(',')}\n`);
    return 0;
  }

  const opsflow = await connect(config);
  try {
    switch (command) {
      case 'backup': {
        const system = checkSystem(one(positionals, 'system'));
        const run = await opsflow.startBackup({ system, dryRun: values['dry-run'] });
        process.stderr.write(`started ${run.workflowId}\n`);
        if (values.detach) return 0;
        const result = (await follow(opsflow, run.workflowId)) as Awaited<ReturnType<typeof run.result>>;
        process.stdout.write(`${JSON.stringify(result.dryRun ? result.plan : { backupId: result.backupId, ...result.manifest?.components.postgres, rowCounts: undefined }, null, 2)}\n`);
        return 0;
      }
      case 'restore': {
        const system = checkSystem(one(positionals, 'system'));
        const run = await opsflow.startRestore({ system, backup: values.backup, into: values.into, approved: values.yes, dryRun: values['dry-run'] });
        process.stderr.write(`started ${run.workflowId}\n`);
        if (values.detach) return 0;
        const result = await follow(opsflow, run.workflowId, { approvals: true });
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return 0;
      }
      case 'deploy': {
        const system = checkSystem(one(positionals, 'system'));
        const images = Object.fromEntries((values.image ?? []).map((spec) => {
          const eq = spec.indexOf('=');
          if (eq <= 0) throw new InvalidInputError(`--image: expected CONTAINER=IMAGE, got "${spec}"`);
          return [spec.slice(0, eq), spec.slice(eq + 1)];
        }));
        const bakeSeconds = values.bake === undefined ? undefined : parseDuration(values.bake, '--bake');
        const run = await opsflow.startDeploy({ system, images, changeCause: values.cause, skipChecks: values['skip-checks'], bakeSeconds });
        process.stderr.write(`started ${run.workflowId}; controls: opsflow pause|resume|abort|promote ${run.workflowId}\n`);
        if (values.detach) return 0;
        const result = await follow(opsflow, run.workflowId);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return 0;
      }
      case 'pause':
      case 'resume':
      case 'abort':
      case 'promote': {
        const workflowId = one(positionals, 'workflowId');
        const by = values.by ?? userInfo().username;
        await opsflow.controlDeploy(workflowId, command, by);
        process.stderr.write(`${command} ${workflowId} as ${by}\n`);
        return 0;
      }
      case 'maintenance': {
        const system = checkSystem(one(positionals, 'system'));
        const scaleTo = values['scale-to'] === undefined ? undefined : Number(values['scale-to']);
        const run = await opsflow.startMaintenance({ system, reason: values.reason ?? '', durationSeconds: parseDuration(values.duration, '--duration'), scaleTo });
        process.stderr.write(`started ${run.workflowId}; close it early with: opsflow end ${run.workflowId}\n`);
        if (values.detach) return 0;
        const result = await follow(opsflow, run.workflowId);
        process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
        return 0;
      }
      case 'end': {
        const workflowId = one(positionals, 'workflowId');
        const by = values.by ?? userInfo().username;
        await opsflow.endMaintenance(workflowId, by);
        process.stderr.write(`ended the window of ${workflowId} as ${by}; its workloads are being scaled back\n`);
        return 0;
      }
      case 'status': {
        const workflowId = one(positionals, 'workflowId');
        if (values.follow) {
          await followRun(opsflow.temporal.workflow.getHandle(workflowId));
        }
        process.stdout.write(`${JSON.stringify(await opsflow.status(workflowId), null, 2)}\n`);
        return 0;
      }
      case 'approve':
      case 'reject': {
        const workflowId = one(positionals, 'workflowId');
        const by = values.by ?? userInfo().username;
        if (command === 'approve') await opsflow.approve(workflowId, by, values.comment);
        else await opsflow.reject(workflowId, by, values.comment);
        process.stderr.write(`${command === 'approve' ? 'approved' : 'rejected'} ${workflowId} as ${by}\n`);
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
