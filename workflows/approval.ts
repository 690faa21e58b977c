/**
 * The approval step before anything destructive: the run shows its plan in
 * `status` and waits for the `approve` or `reject` Update. Rejected updates
 * never enter history (the validator refuses them), so a stray or malformed
 * approval is harmless.
 */
import { ApplicationFailure, condition, setHandler } from '@temporalio/workflow';
import type { RunTracker } from './run.ts';
import { approveUpdate, rejectUpdate, type ApprovalInput, type RestorePlan, type SetRestorePlan } from './shared.ts';

export async function awaitApproval(
  run: RunTracker,
  plan: RestorePlan | SetRestorePlan,
  input: { approved: boolean; approvalTimeoutSeconds: number },
): Promise<string> {
  if (input.approved) {
    run.skip('approval', 'pre-approved in the input');
    return 'input';
  }
  let decision: { approved: boolean; by: ApprovalInput } | undefined;
  const validate = (by: ApprovalInput) => {
    if (!run.status.awaitingApproval) throw new Error(`nothing is waiting for approval (phase: ${run.status.phase})`);
    if (typeof by?.by !== 'string' || by.by.trim() === '') throw new Error('by: required (who approves, for the audit trail)');
  };
  setHandler(approveUpdate, (by) => { decision = { approved: true, by }; return { approved: true } as const; }, { validator: validate });
  setHandler(rejectUpdate, (by) => { decision = { approved: false, by }; return { rejected: true } as const; }, { validator: validate });

  return run.step('approval', async () => {
    run.status.awaitingApproval = { plan, since: new Date().toISOString() };
    try {
      const decided = await condition(() => decision !== undefined, input.approvalTimeoutSeconds * 1000);
      if (!decided) throw ApplicationFailure.nonRetryable(`no approval within ${input.approvalTimeoutSeconds} s; nothing was changed`, 'ApprovalTimeout');
      if (!decision!.approved) {
        throw ApplicationFailure.nonRetryable(`rejected by ${decision!.by.by}${decision!.by.comment ? `: ${decision!.by.comment}` : ''}; nothing was changed`, 'Rejected');
      }
      return decision!.by.by;
    } finally {
      run.status.awaitingApproval = undefined;
    }
  }, (by) => `approved by ${by}`);
}
