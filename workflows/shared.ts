/**
 * What clients and workflows share: input schemas, signal/update/query
 * definitions, status and result types, search attribute keys. Sandbox-safe:
 * only @temporalio/workflow, @temporalio/common, zod and pure code.
 */
import { defineQuery, defineUpdate } from '@temporalio/workflow';
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';
import { z } from 'zod';
import { BACKUP_ID_PATTERN, DATABASE_NAME_PATTERN, SYSTEM_NAME_PATTERN } from '../src/domain/names.ts';
import type { Manifest } from '../src/domain/manifest.ts';

export const TASK_QUEUE = 'opsflow';

// ---------------------------------------------------------------- inputs

const systemName = z.string().regex(SYSTEM_NAME_PATTERN, 'must be a configured system name (lower-case letters, digits, -)');

export const backupInputSchema = z.strictObject({
  system: systemName,
  /** Report the plan (what would be backed up, how big) and change nothing. */
  dryRun: z.boolean().default(false),
});
export type BackupInput = z.input<typeof backupInputSchema>;

/** Which set: `latest`, `latest-verified`, a date (the newest set of that day or before, UTC) or a backup ID. */
const backupRef = z
  .string()
  .default('latest')
  .refine(
    (v) => v === 'latest' || v === 'latest-verified' || /^\d{4}-\d{2}-\d{2}$/.test(v) || BACKUP_ID_PATTERN.test(v),
    'must be latest, latest-verified, a date (YYYY-MM-DD) or a backup ID like 20261123T020000Z-k3x9qa',
  );
const componentNames = z.array(z.string().regex(/^[a-z][a-z0-9-]{0,39}$/, 'a component name')).min(1);

export const restoreInputSchema = z.strictObject({
  system: systemName,
  backup: backupRef,
  /** Restore a set of this other system (recovery into another place: another namespace, cluster or server). */
  from: systemName.optional(),
  /** Only these components of the set; all of them by default. */
  components: componentNames.optional(),
  /** Restore the database into this new database and leave the live one alone (postgres only). */
  into: z.string().regex(DATABASE_NAME_PATTERN, 'must be a plain database name (a-z, 0-9, _)').optional(),
  /** Skip the approval step (the swap replaces the live database). */
  approved: z.boolean().default(false),
  /** How long to wait for an approval before giving up, in seconds. */
  approvalTimeoutSeconds: z.number().int().positive().default(24 * 3600),
  dryRun: z.boolean().default(false),
});
export type RestoreInput = z.input<typeof restoreInputSchema>;

export const disasterRecoveryInputSchema = z.strictObject({
  system: systemName,
  backup: backupRef,
  /** Recover from a set of this other system (a new cluster, namespace or database server configured as `system`). */
  from: systemName.optional(),
  approved: z.boolean().default(false),
  approvalTimeoutSeconds: z.number().int().positive().default(24 * 3600),
  dryRun: z.boolean().default(false),
  /** Call the configured traffic switch webhook at the end (default: when one is configured). */
  switchTraffic: z.boolean().default(true),
});
export type DisasterRecoveryInput = z.input<typeof disasterRecoveryInputSchema>;

export const verifyInputSchema = z.strictObject({
  system: systemName,
  backup: backupRef,
});
export type VerifyInput = z.input<typeof verifyInputSchema>;

export const drillInputSchema = z.strictObject({
  system: systemName,
  /** The set the drill restores: the newest by default. */
  backup: backupRef,
  /**
   * A scratch system to recover the whole set into and run the application
   * in (health checks), emptied afterwards. Default: the system's
   * recovery.drillInto; without either, each component is checked in a
   * scratch place of its own.
   */
  into: systemName.optional(),
});
export type DrillInput = z.input<typeof drillInputSchema>;

export const retentionInputSchema = z.strictObject({
  system: systemName,
  /** Report what would go, delete nothing. */
  dryRun: z.boolean().default(false),
});
export type RetentionInput = z.input<typeof retentionInputSchema>;

export const maintenanceInputSchema = z.strictObject({
  system: systemName,
  /** Shown in the status and recorded in history: why the window is open. */
  reason: z.string().trim().min(1, 'required: why the maintenance happens').max(500),
  /** The window closes on its own after this long (or earlier with `end`). */
  durationSeconds: z.number().int().positive().max(7 * 24 * 3600).default(1800),
  /** Scale the application's workloads to this many replicas for the window (0 stops it); omitted leaves them running. */
  scaleTo: z.number().int().min(0).optional(),
});
export type MaintenanceInput = z.input<typeof maintenanceInputSchema>;

export const deployInputSchema = z.strictObject({
  system: systemName,
  /** Container name → new image, e.g. { "app": "registry.example.com/shop:v2.4.1" }. */
  images: z.record(z.string().min(1), z.string().min(1)).refine((m) => Object.keys(m).length > 0, 'name at least one container and its new image'),
  /** Why, for `kubectl rollout history` and the notification. */
  changeCause: z.string().max(300).optional(),
  /** Skip the pre-deploy checks (an emergency fix while a check is known to fail). */
  skipChecks: z.boolean().default(false),
  /** Overrides the configured bake window, in seconds. */
  bakeSeconds: z.number().int().min(0).optional(),
});
export type DeployInput = z.input<typeof deployInputSchema>;

// ---------------------------------------------------------------- status

export type StepState = 'running' | 'done' | 'failed' | 'skipped' | 'compensated';

export interface StepStatus {
  name: string;
  state: StepState;
  startedAt: string;
  endedAt?: string;
  detail?: string;
}

export interface RunStatus {
  procedure: 'backup' | 'restore' | 'maintenance' | 'deploy' | 'disasterRecovery' | 'verify' | 'drill' | 'retention';
  system: string;
  phase: string;
  steps: StepStatus[];
  /** Set while a destructive step waits for `approve`/`reject`. */
  awaitingApproval?: { plan: RestorePlan | SetRestorePlan; since: string };
  /** While a maintenance window is open. */
  window?: MaintenanceWindow;
  /** A deploy's images, latest measurements and rollback. */
  deploy?: DeployStatus;
  error?: string;
}

export interface MaintenanceWindow {
  reason: string;
  opensAt: string;
  endsAt: string;
  /** Workload name → replicas it had before the window, to be put back. */
  scaledDown: Record<string, number>;
}

export interface DeployStatus {
  images: Record<string, string>;
  previousImages: Record<string, string>;
  /** Set while paused (by `pause`, or by inconclusive analysis): waiting for `resume` or `abort`. */
  paused?: { by: string; since: string };
  /** The newest measurements, newest last (at most 5). */
  measurements: DeployMeasurement[];
  rollback?: {
    reason: string;
    /** When the first of the measurements that led to the rollback was taken. */
    firstFailureAt?: string;
    startedAt: string;
    completedAt?: string;
  };
}

export interface DeployMeasurement {
  at: string;
  verdict: 'pass' | 'fail' | 'inconclusive';
  summary: string;
  rollout: string;
}

export interface DeployResult {
  images: Record<string, string>;
  previousImages: Record<string, string>;
  measurements: number;
  promotedBy?: string;
  capacityWarning?: string;
}

export interface MaintenanceResult {
  window: MaintenanceWindow;
  endedBy: 'timer' | string;
  /** Workload name → replicas Ready after the window. */
  readyAfter: Record<string, number>;
}

export interface BackupResult {
  backupId: string;
  dryRun: boolean;
  manifest?: Manifest;
  /** Dry run: each component and what its check found. */
  components?: { name: string; kind: string; detail: string }[];
  /** Dry run: the master key the set would be encrypted under. */
  encryptedWith?: string;
  /** Dry run of a format-1 backup (replayed runs only). */
  plan?: { database: string; serverVersion: string; databaseBytes: number; key: string };
}

export interface RestorePlan {
  backupId: string;
  backupCompletedAt: string;
  storedBytes: number;
  rawBytes: number;
  tables: number;
  rows: number;
  mode: 'swap' | 'into';
  /** The database that ends up holding the restored data. */
  target: string;
  /** Scratch database loaded first. */
  recovery: string;
  /** Where the live database goes in swap mode, kept for rollback. */
  retired?: string;
}

/** What a restore or disaster recovery of a set will do, shown before approval. */
export interface SetRestorePlan {
  backupId: string;
  backupCompletedAt: string;
  /** The system whose set is restored (another one when recovering elsewhere). */
  from: string;
  /** The system whose places are overwritten. */
  target: string;
  storedBytes: number;
  components: { name: string; kind: string; storedBytes: number; rawBytes: number; inPod: boolean }[];
  /** Seconds between the set's completion and the plan: the data a recovery would lose. */
  rpoSeconds: number;
  /** Disaster recovery only: workloads scaled to 0 while the data is swapped. */
  workloads?: string[];
}

export interface SetRestoreResult {
  plan: SetRestorePlan;
  dryRun: boolean;
  approvedBy?: string;
  /** Component name → what its check found after restoring. */
  restored?: Record<string, string>;
  /** Wall time of the run, from its start to the end (disaster recovery: the measured RTO). */
  rtoSeconds?: number;
  rpoSeconds?: number;
  health?: { name: string; ok: boolean; detail: string }[];
  trafficSwitched?: boolean;
}

export interface VerifyResult {
  backupId: string;
  components: Record<string, string>;
}

export interface DrillResult {
  backupId: string;
  components: Record<string, string>;
  /** The scratch system the set was recovered into, when the drill ran the application. */
  into?: string;
  health?: { name: string; ok: boolean; detail: string }[];
  /** What was removed from the scratch system afterwards, per component. */
  tornDown?: Record<string, string>;
  /** The recovery's wall time (into a scratch system), or the whole drill's. */
  rtoSeconds: number;
  rpoSeconds: number;
  rpoTargetSeconds?: number;
}

export interface RetentionResult {
  dryRun: boolean;
  keep: { backupId: string; reasons: string[] }[];
  delete: { backupId: string; reasons: string[] }[];
  deletedObjects: number;
  abortedUploads: number;
}

export interface RestoreResult {
  plan: RestorePlan;
  dryRun: boolean;
  rowCountsVerified?: number;
  approvedBy?: string;
}

// ---------------------------------------------------------------- messages

export const statusQuery = defineQuery<RunStatus>('status');

export interface ApprovalInput {
  /** Who approves, for the audit trail. */
  by: string;
  comment?: string;
}
/** Approves the waiting destructive step. Rejected by the validator when nothing waits. */
export const approveUpdate = defineUpdate<{ approved: true }, [ApprovalInput]>('approve');
/** Declines the waiting destructive step: the run ends without touching the target. */
export const rejectUpdate = defineUpdate<{ rejected: true }, [ApprovalInput]>('reject');

/** Closes a maintenance window early. */
export const endMaintenanceUpdate = defineUpdate<{ ended: true }, [ApprovalInput]>('end');

/** Deploy controls. `abort` rolls back now; `promote` ends the bake early; `pause` holds the rollout and its decisions until `resume`. */
export const pauseDeployUpdate = defineUpdate<{ paused: true }, [ApprovalInput]>('pause');
export const resumeDeployUpdate = defineUpdate<{ resumed: true }, [ApprovalInput]>('resume');
export const abortDeployUpdate = defineUpdate<{ aborted: true }, [ApprovalInput]>('abort');
export const promoteDeployUpdate = defineUpdate<{ promoted: true }, [ApprovalInput]>('promote');

// ---------------------------------------------------------------- search attributes

export const searchAttributes = {
  system: defineSearchAttributeKey('OpsflowSystem', SearchAttributeType.KEYWORD),
  procedure: defineSearchAttributeKey('OpsflowProcedure', SearchAttributeType.KEYWORD),
  phase: defineSearchAttributeKey('OpsflowPhase', SearchAttributeType.KEYWORD),
};
/** For `temporal server start-dev --search-attribute` and `opsflow init`. */
export const SEARCH_ATTRIBUTE_NAMES = ['OpsflowSystem', 'OpsflowProcedure', 'OpsflowPhase'] as const;
