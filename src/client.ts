/**
 * The typed client SDK other services (and the CLI) use to run procedures.
 * Inputs are validated here with the same schemas the workflows use, so a bad
 * input fails before anything starts, naming the field. Workflow IDs are the
 * locks: a second restore of the same target is refused with the holder's ID.
 */
import { Client, Connection, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import type { z } from 'zod';
import { formatIssues, readableErrors } from './domain/validation.ts';
import { ConflictError, InvalidInputError } from './errors.ts';
import { workflowIds } from './domain/names.ts';
import { temporalTarget, type TemporalTarget } from './temporal.ts';
import {
  approveUpdate,
  abortDeployUpdate,
  backupInputSchema,
  deployInputSchema,
  pauseDeployUpdate,
  promoteDeployUpdate,
  resumeDeployUpdate,
  endMaintenanceUpdate,
  maintenanceInputSchema,
  rejectUpdate,
  restoreInputSchema,
  disasterRecoveryInputSchema,
  verifyInputSchema,
  drillInputSchema,
  retentionInputSchema,
  searchAttributes,
  statusQuery,
  type BackupInput,
  type BackupResult,
  type DeployInput,
  type DeployResult,
  type MaintenanceInput,
  type MaintenanceResult,
  type RestoreInput,
  type RestoreResult,
  type RunStatus,
  type DisasterRecoveryInput,
  type SetRestoreResult,
  type VerifyInput,
  type VerifyResult,
  type DrillInput,
  type DrillResult,
  type RetentionInput,
  type RetentionResult,
} from '../workflows/shared.ts';

function validate<S extends z.ZodType>(schema: S, input: unknown): z.output<S> {
  const result = schema.safeParse(input, readableErrors);
  if (!result.success) throw new InvalidInputError(`invalid input: ${formatIssues(result.error, 'input')}`);
  return result.data;
}

export interface StartedRun<R> {
  workflowId: string;
  handle: WorkflowHandle;
  result(): Promise<R>;
}

export class OpsflowClient {
  private constructor(
    readonly temporal: Client,
    private readonly connection: Connection,
    readonly target: TemporalTarget,
  ) {}

  static async connect(target: TemporalTarget = temporalTarget()): Promise<OpsflowClient> {
    const connection = await Connection.connect({ address: target.address, tls: target.tls, apiKey: target.apiKey });
    return new OpsflowClient(new Client({ connection, namespace: target.namespace }), connection, target);
  }

  async close(): Promise<void> {
    await this.connection.close();
  }

  /** Starts a procedure; `procedure` is both the workflow type and the lock's name. */
  private async start<R>(procedure: RunStatus['procedure'], input: unknown, workflowId: string, system: string): Promise<StartedRun<R>> {
    try {
      const handle = await this.temporal.workflow.start(procedure, {
        taskQueue: this.target.taskQueue,
        workflowId,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        typedSearchAttributes: [
          { key: searchAttributes.system, value: system },
          { key: searchAttributes.procedure, value: procedure },
        ],
      });
      return { workflowId, handle, result: () => handle.result() as Promise<R> };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        throw new ConflictError(`a ${procedure} of ${system} is already running as workflow ${workflowId}; wait for it or cancel it first`);
      }
      throw err;
    }
  }

  async startBackup(input: BackupInput, options: { workflowId?: string } = {}): Promise<StartedRun<BackupResult>> {
    const parsed = validate(backupInputSchema, input);
    const workflowId = options.workflowId ?? workflowIds.backup(parsed.system, new Date());
    return this.start<BackupResult>('backup', parsed, workflowId, parsed.system);
  }

  /**
   * Restores a set (or some components) into the system's live places; with
   * `into`, the database alone into a new database. A restore of the live
   * system shares its lock with disaster recovery: one at a time.
   */
  async startRestore(input: RestoreInput, options: { workflowId?: string } = {}): Promise<StartedRun<RestoreResult & SetRestoreResult>> {
    const parsed = validate(restoreInputSchema, input);
    const workflowId = options.workflowId ?? (parsed.into ? workflowIds.restore(parsed.system, parsed.into) : workflowIds.recovery(parsed.system));
    return this.start('restore', parsed, workflowId, parsed.system);
  }

  async startDisasterRecovery(input: DisasterRecoveryInput, options: { workflowId?: string } = {}): Promise<StartedRun<SetRestoreResult>> {
    const parsed = validate(disasterRecoveryInputSchema, input);
    return this.start('disasterRecovery', parsed, options.workflowId ?? workflowIds.recovery(parsed.system), parsed.system);
  }

  /** Deep verification of a set: restored into scratch places and compared with its manifest. */
  async startVerify(input: VerifyInput, options: { workflowId?: string } = {}): Promise<StartedRun<VerifyResult>> {
    const parsed = validate(verifyInputSchema, input);
    return this.start('verify', parsed, options.workflowId ?? workflowIds.verify(parsed.system, `${parsed.backup}-${Date.now()}`), parsed.system);
  }

  async startDrill(input: DrillInput, options: { workflowId?: string } = {}): Promise<StartedRun<DrillResult>> {
    const parsed = validate(drillInputSchema, input);
    return this.start('drill', parsed, options.workflowId ?? workflowIds.drill(parsed.system), parsed.system);
  }

  async startRetention(input: RetentionInput, options: { workflowId?: string } = {}): Promise<StartedRun<RetentionResult>> {
    const parsed = validate(retentionInputSchema, input);
    return this.start('retention', parsed, options.workflowId ?? workflowIds.retention(parsed.system), parsed.system);
  }

  /** Starts a deploy; one per system at a time (a second is refused naming the run that holds it). */
  async startDeploy(input: DeployInput): Promise<StartedRun<DeployResult>> {
    const parsed = validate(deployInputSchema, input);
    return this.start<DeployResult>('deploy', parsed, workflowIds.deploy(parsed.system), parsed.system);
  }

  /** Deploy controls: `abort` rolls back now, `promote` ends the bake, `pause`/`resume` hold the rollout. */
  async controlDeploy(workflowId: string, control: 'pause' | 'resume' | 'abort' | 'promote', by: string): Promise<void> {
    const update = { pause: pauseDeployUpdate, resume: resumeDeployUpdate, abort: abortDeployUpdate, promote: promoteDeployUpdate }[control];
    await this.temporal.workflow.getHandle(workflowId).executeUpdate(update as typeof pauseDeployUpdate, { args: [{ by }] });
  }

  /** Opens a maintenance window; one per system at a time. */
  async startMaintenance(input: MaintenanceInput): Promise<StartedRun<MaintenanceResult>> {
    const parsed = validate(maintenanceInputSchema, input);
    return this.start<MaintenanceResult>('maintenance', parsed, workflowIds.maintenance(parsed.system), parsed.system);
  }

  /** Closes an open maintenance window now; its workloads are scaled back. */
  async endMaintenance(workflowId: string, by: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).executeUpdate(endMaintenanceUpdate, { args: [{ by }] });
  }

  async status(workflowId: string): Promise<RunStatus> {
    return this.temporal.workflow.getHandle(workflowId).query(statusQuery);
  }

  async approve(workflowId: string, by: string, comment?: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).executeUpdate(approveUpdate, { args: [{ by, comment }] });
  }

  async reject(workflowId: string, by: string, comment?: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).executeUpdate(rejectUpdate, { args: [{ by, comment }] });
  }

  /** Cancels a run; its compensations still run. */
  async cancel(workflowId: string): Promise<void> {
    await this.temporal.workflow.getHandle(workflowId).cancel();
  }
}
