/**
 * The backup catalog from the CLI and as metrics: a real backup through a
 * worker, then `backups list`, `describe` and `pin`/`unpin` (the CLI reads S3
 * itself), and the worker's `/metrics` with the backup's completion time, its
 * age against the configured maximum, and the newest drill's RPO/RTO.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { REPO_ROOT, freePort } from '../../deploy/bed/bed.ts';
import { bedStore, client, startWorker, testSetup, type WorkerProcess } from '../support/bed.ts';
import { createSampleDatabase, dropDatabase } from '../support/data.ts';
import type { OpsflowClient } from '../../src/client.ts';
import type { Manifest, PostgresComponent } from '../../src/domain/manifest.ts';
import { backupPrefix, PINNED_FILE } from '../../src/domain/names.ts';
import { renderMetrics } from '../../src/metrics.ts';

const DB = 'catalog_app';
// `idle` has no backup at all: its age is +Inf, so `age > max` alerts.
const setup = testSetup('catalog', { ledger: DB, idle: 'catalog_idle' }, { ledger: { backup: { maxAgeHours: 12 } } });
let worker: WorkerProcess;
let opsflow: OpsflowClient;
let healthPort: number;

before(async () => {
  await createSampleDatabase(DB, 1_500);
  healthPort = await freePort();
  worker = await startWorker(setup, { OPSFLOW_HEALTH_PORT: String(healthPort) });
  opsflow = await client(setup);
});

after(async () => {
  await opsflow?.close();
  await worker?.stop();
  await dropDatabase(DB);
});

const escape = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

function cli(...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(`${REPO_ROOT}/bin/opsflow`, args, { env: { ...process.env, ...setup.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c) => (stdout += c));
    child.stderr.on('data', (c) => (stderr += c));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('backup catalog from the CLI, and metrics', () => {
  let manifest: Manifest;
  let pgc: PostgresComponent;

  before(async () => {
    const run = await opsflow.startBackup({ system: 'ledger' });
    const result = await run.result();
    manifest = result.manifest!;
    pgc = manifest.components.find((c) => c.kind === 'postgres') as PostgresComponent;
    assert.ok(pgc);
  });

  it('backups list shows the set: completed, size, components, encrypted, pinned, verified', async () => {
    const r = await cli('backups', 'list', 'ledger');
    assert.equal(r.code, 0, r.stderr);
    const completed = manifest.completedAt.replace(/\.\d+Z$/, 'Z');
    assert.match(r.stdout, new RegExp(`^${manifest.backupId}  +${completed}  +[\\d.]+ \\S+  +postgres  +no  +-  +-$`, 'm'));

    const json = JSON.parse((await cli('backups', 'list', 'ledger', '--json')).stdout);
    assert.deepEqual(json, [{ backupId: manifest.backupId, completedAt: manifest.completedAt, storedBytes: pgc.storedBytes, components: ['postgres'], encrypted: false, pinned: false }]);

    const none = await cli('backups', 'list', 'idle');
    assert.equal(none.code, 0, none.stderr);
    assert.equal(none.stdout, 'no complete backups of idle\n');
  });

  it('backups describe prints the manifest: components with sizes, sha256 prefix and details; --json the raw manifest', async () => {
    const r = await cli('backups', 'describe', 'ledger', manifest.backupId);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^backup +${manifest.backupId}$`, 'm'));
    assert.match(r.stdout, /^system +ledger$/m);
    assert.match(r.stdout, new RegExp(`^workflow +${manifest.workflowId}$`, 'm'));
    assert.match(r.stdout, /^encrypted +no$/m);
    assert.match(r.stdout, /^pinned +no$/m);
    assert.match(r.stdout, /^verified +never$/m);
    assert.match(r.stdout, /^components \(1\):$/m);
    assert.match(r.stdout, new RegExp(`^ {2}postgres \\(postgres\\) {2}[\\d.]+ \\S+ stored, [\\d.]+ \\S+ raw {2}sha256 ${pgc.sha256.slice(0, 12)}…$`, 'm'));
    const rows = Object.values(pgc.rowCounts).reduce((a, b) => a + b, 0);
    assert.match(r.stdout, new RegExp(`database ${DB}, PostgreSQL ${escape(pgc.serverVersion)}, ${Object.keys(pgc.rowCounts).length} tables, ${rows.toLocaleString('en-US')} rows`));
    assert.ok(r.stdout.includes(pgc.key));

    const raw = await cli('backups', 'describe', 'ledger', 'latest', '--json');
    assert.equal(raw.code, 0, raw.stderr);
    assert.deepEqual(JSON.parse(raw.stdout), JSON.parse(JSON.stringify(manifest)));

    const missing = await cli('backups', 'describe', 'ledger', '20200101T000000Z-aaaaaa');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /backup 20200101T000000Z-aaaaaa of system "ledger" not found/);
  });

  it('backups pin keeps the set from retention (pinned.json beside the manifest); unpin removes it', async () => {
    const pinnedKey = backupPrefix(setup.prefix, 'ledger', manifest.backupId) + PINNED_FILE;
    const pin = await cli('backups', 'pin', 'ledger', manifest.backupId, '--reason', 'audit 2026', '--by', 'test-sre');
    assert.equal(pin.code, 0, pin.stderr);
    assert.match(pin.stdout, new RegExp(`pinned ${manifest.backupId} of ledger`));
    assert.ok(await bedStore().head(pinnedKey), 'pinned.json written');
    assert.match((await cli('backups', 'list', 'ledger')).stdout, new RegExp(`^${manifest.backupId} .* +pinned +-$`, 'm'));
    assert.match((await cli('backups', 'describe', 'ledger', 'latest')).stdout, /^pinned +yes by test-sre at \S+Z: audit 2026$/m);

    const unpin = await cli('backups', 'unpin', 'ledger', 'latest');
    assert.equal(unpin.code, 0, unpin.stderr);
    assert.match(unpin.stdout, new RegExp(`unpinned ${manifest.backupId} of ledger`));
    assert.equal(await bedStore().head(pinnedKey), undefined);
    assert.match((await cli('backups', 'list', 'ledger')).stdout, new RegExp(`^${manifest.backupId} .* +no +- +-$`, 'm'));
  });

  it('catalog commands check the system and the sub-command', async () => {
    const unknown = await cli('backups', 'list', 'nope');
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /unknown system "nope"/);
    const sub = await cli('backups', 'frobnicate', 'ledger');
    assert.equal(sub.code, 2);
    assert.match(sub.stderr, /usage: opsflow backups list\|describe\|pin\|unpin\|verify/);
  });

  it('the worker serves /metrics: the backup timestamp and age, the maximum age, the newest drill', async () => {
    // A drill record as the drill workflow writes it (drills/ under the system prefix).
    const drillAt = new Date(Date.now() - 3_600_000).toISOString();
    await bedStore().putJson(`${setup.prefix}/ledger/drills/${drillAt.replace(/[-:.]/g, '')}.json`, {
      backupId: manifest.backupId, components: { postgres: 'ok' }, rtoSeconds: 42, rpoSeconds: 7_200, rpoTargetSeconds: 3_600, at: drillAt, ok: false,
    });
    const older = new Date(Date.now() - 86_400_000).toISOString();
    await bedStore().putJson(`${setup.prefix}/ledger/drills/${older.replace(/[-:.]/g, '')}.json`, { rtoSeconds: 1, rpoSeconds: 1, at: older, ok: true });

    const res = await fetch(`http://127.0.0.1:${healthPort}/metrics`);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (name: string, system: string) => {
      const m = new RegExp(`^${name}\\{system="${system}"\\} (\\S+)$`, 'm').exec(text);
      return m ? Number(m[1]) : undefined;
    };
    assert.ok(text.includes(`opsflow_backup_last_success_timestamp_seconds{system="ledger"} ${Date.parse(manifest.completedAt) / 1000}\n`), text);
    const age = value('opsflow_backup_age_seconds', 'ledger')!;
    assert.ok(age >= 0 && age < 600, `age ${age}`);
    assert.equal(value('opsflow_backup_max_age_seconds', 'ledger'), 12 * 3600);
    assert.equal(value('opsflow_backup_max_age_seconds', 'idle'), 26 * 3600);
    assert.match(text, /^opsflow_backup_age_seconds\{system="idle"\} \+Inf$/m);
    assert.equal(value('opsflow_backup_last_success_timestamp_seconds', 'idle'), undefined);
    assert.equal(value('opsflow_drill_last_timestamp_seconds', 'ledger'), Date.parse(drillAt) / 1000);
    assert.equal(value('opsflow_drill_rpo_seconds', 'ledger'), 7_200);
    assert.equal(value('opsflow_drill_rto_seconds', 'ledger'), 42);
    assert.equal(value('opsflow_drill_ok', 'ledger'), 0);
    assert.equal(value('opsflow_drill_ok', 'idle'), undefined);
    assert.equal(value('opsflow_catalog_up', 'ledger'), 1);
    assert.match(text, /^# TYPE opsflow_backup_age_seconds gauge$/m);

    // Cached: a second scrape within 30 s does not read S3 again (the same text, ages aside).
    const again = await (await fetch(`http://127.0.0.1:${healthPort}/metrics`)).text();
    assert.equal(again.replace(/^opsflow_backup_age_seconds.*$/gm, ''), text.replace(/^opsflow_backup_age_seconds.*$/gm, ''));
    assert.equal((await fetch(`http://127.0.0.1:${healthPort}/nope`)).status, 404);
  });

  it('metrics text: a catalog that cannot be read is reported, not fatal', () => {
    const text = renderMetrics([{ system: 'down', maxAgeSeconds: 60, error: 'S3 unreachable' }], Date.now());
    assert.match(text, /^opsflow_catalog_up\{system="down"\} 0$/m);
    assert.match(text, /^opsflow_backup_max_age_seconds\{system="down"\} 60$/m);
    assert.doesNotMatch(text, /^opsflow_backup_age_seconds\{/m, 'no age when unknown (absent, not +Inf)');
  });
});
