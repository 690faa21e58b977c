/**
 * The restore of a set's components, shared by `restore` and
 * `disasterRecovery`: every component staged beside the live data and
 * checked against the manifest first, then swapped in, then the replaced
 * copies cleaned up. Each step registers its undo before it runs, so a
 * failure or cancellation at any point puts every swapped component back and
 * removes every staged one: never a half-restored target.
 */
import { ApplicationFailure, patched } from '@temporalio/workflow';
import { componentRawBytes, componentStoredBytes, type Component, type Manifest } from '../src/domain/manifest.ts';
import { allSettledOrFirstError } from '../src/promises.ts';
import { activities, change, quick, transfer, watched } from './activityOptions.ts';
import type { Compensation, RunTracker } from './run.ts';
import type { SetRestorePlan } from './shared.ts';

const { findBackup } = activities(watched(quick));
const { stageComponent, verifyComponent } = activities(transfer);
const { swapInComponent, swapBackComponent, discardComponent } = activities(watched(change));

/** Runs recorded before this patch staged and cleaned up one component after another. */
const PARALLEL_STEPS = 'parallel-staging';

export interface SetRestore {
  /** The system whose places are written. */
  system: string;
  /** The system the set belongs to. */
  setSystem: string;
  manifest: Manifest;
  /** Names what staging creates; from the workflow, so a resumed run finds it. */
  tag: string;
}

/** Finds the set and makes the plan: which components, how big, how old. Fails if a component is not in the set. */
export async function planSetRestore(run: RunTracker, input: { system: string; from?: string; backup: string; components?: string[] }, inPod: (c: Component) => boolean) {
  const setSystem = input.from ?? input.system;
  const manifest = await run.step('find-backup', () => findBackup({ system: setSystem, backup: input.backup }), (m) => `${m.backupId} of ${setSystem}, completed ${m.completedAt}`);
  const wanted = input.components ?? manifest.components.map((c) => c.name);
  const missing = wanted.filter((name) => !manifest.components.some((c) => c.name === name));
  if (missing.length) {
    throw ApplicationFailure.nonRetryable(`backup ${manifest.backupId} has no component ${missing.join(', ')} (it has: ${manifest.components.map((c) => c.name).join(', ')})`, 'NotFound');
  }
  const components = manifest.components.filter((c) => wanted.includes(c.name));
  const plan: SetRestorePlan = {
    backupId: manifest.backupId,
    backupCompletedAt: manifest.completedAt,
    from: setSystem,
    target: input.system,
    storedBytes: components.reduce((n, c) => n + componentStoredBytes(c), 0),
    components: components.map((c) => ({ name: c.name, kind: c.kind, storedBytes: componentStoredBytes(c), rawBytes: componentRawBytes(c), inPod: inPod(c) })),
    rpoSeconds: Math.round((Date.now() - Date.parse(manifest.completedAt)) / 1000),
  };
  return { manifest, components, plan };
}

function stepInput(set: SetRestore, component: Component) {
  return { system: set.system, setSystem: set.setSystem, component, encryption: set.manifest.encryption, tag: set.tag };
}

/**
 * Stages every component (nothing live changes) at once: each writes to a
 * place of its own (a recovery database, a spare Redis database, a sibling
 * directory), so the wait is the slowest stage rather than the sum. Every
 * cleanup is registered first, and all stages settle before a failure is
 * thrown, so compensation never races a stage that is still running.
 */
export async function stageAll(run: RunTracker, set: SetRestore, components: Component[], compensations: Compensation[]): Promise<Record<string, string>> {
  const stage = (c: Component) => run.step(`stage ${c.name}`, () => stageComponent(stepInput(set, c)), (detail) => detail);
  if (!patched(PARALLEL_STEPS)) {
    const found: Record<string, string> = {};
    for (const c of components) {
      compensations.unshift({ name: `clean up ${c.name}`, undo: () => discardComponent(stepInput(set, c)) });
      found[c.name] = await stage(c);
    }
    return found;
  }
  for (const c of components) compensations.unshift({ name: `clean up ${c.name}`, undo: () => discardComponent(stepInput(set, c)) });
  const details = await allSettledOrFirstError(components.map(stage));
  return Object.fromEntries(components.map((c, i) => [c.name, details[i]!]));
}

/** Makes each staged component live; its way back registered first. */
export async function swapInAll(run: RunTracker, set: SetRestore, components: Component[], compensations: Compensation[]): Promise<void> {
  for (const c of components) {
    compensations.unshift({ name: `put back ${c.name}`, undo: () => swapBackComponent(stepInput(set, c)) });
    await run.step(`swap in ${c.name}`, () => swapInComponent(stepInput(set, c)));
  }
}

/** After success: what staging and swapping left is removed, all at once (a replaced database is kept, renamed). */
export async function commitAll(run: RunTracker, set: SetRestore, components: Component[]): Promise<void> {
  const cleanUp = (c: Component) => run.step(`clean up ${c.name}`, () => discardComponent(stepInput(set, c)));
  if (!patched(PARALLEL_STEPS)) {
    for (const c of components) await cleanUp(c);
    return;
  }
  await allSettledOrFirstError(components.map(cleanUp));
}

/** Deep verification: each component restored into a scratch place and compared with the manifest. */
export async function verifyAll(run: RunTracker, set: Omit<SetRestore, 'tag'>, components: Component[]): Promise<Record<string, string>> {
  const found: Record<string, string> = {};
  for (const c of components) {
    found[c.name] = await run.step(`verify ${c.name}`, () => verifyComponent({ system: set.system, setSystem: set.setSystem, component: c, encryption: set.manifest.encryption }), (d) => d);
  }
  return found;
}
