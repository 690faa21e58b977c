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
  procedure: 'backup' | 'restore' | 'maintenance';
  system: string;
  phase: string;
  steps: StepStatus[];
  /** Set while a destructive step waits for `approve`/`reject`. */
  awaitingApproval?: { plan: RestorePlan; since: string };
  /** While a maintenance window is open. */
  window?: MaintenanceWindow;
  error?: string;
}

export interface MaintenanceWindow {
  reason: string;
  opensAt: string;
  endsAt: string;
  /** Workload name → replicas it had before the window, to be put back. */
  scaledDown: Record<string, number>;
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

// ---------------------------------------------------------------- search attributes

export const searchAttributes = {
  system: defineSearchAttributeKey('OpsflowSystem', SearchAttributeType.KEYWORD),
  procedure: defineSearchAttributeKey('OpsflowProcedure', SearchAttributeType.KEYWORD),
  phase: defineSearchAttributeKey('OpsflowPhase', SearchAttributeType.KEYWORD),
};
/** For `temporal server start-dev --search-attribute` and `opsflow init`. */
export const SEARCH_ATTRIBUTE_NAMES = ['OpsflowSystem', 'OpsflowProcedure', 'OpsflowPhase'] as const;
