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

export const restoreInputSchema = z.strictObject({
  system: systemName,
  /** `latest` or a backup ID such as 20261123T020000Z-k3x9qa. */
  backup: z
    .string()
    .default('latest')
    .refine((v) => v === 'latest' || BACKUP_ID_PATTERN.test(v), 'must be "latest" or a backup ID like 20261123T020000Z-k3x9qa'),
  /** Restore into this new database and leave the live one alone. Without it, swap in place of the live database. */
  into: z.string().regex(DATABASE_NAME_PATTERN, 'must be a plain database name (a-z, 0-9, _)').optional(),
  /** Skip the approval step (the swap replaces the live database). */
  approved: z.boolean().default(false),
  /** How long to wait for an approval before giving up, in seconds. */
  approvalTimeoutSeconds: z.number().int().positive().default(24 * 3600),
  dryRun: z.boolean().default(false),
});
export type RestoreInput = z.input<typeof restoreInputSchema>;

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
  procedure: 'backup' | 'restore' | 'maintenance' | 'deploy';
  system: string;
  phase: string;
  steps: StepStatus[];
  /** Set while a destructive step waits for `approve`/`reject`. */
  awaitingApproval?: { plan: RestorePlan; since: string };
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
