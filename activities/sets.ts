/**
 * Backup sets, component by component: one activity per step and
 * component, so a crash repeats one component's step, never the set. Each
 * activity looks its component up by name in the config and hands it to the
 * kind's driver (activities/components/).
 *
 * Encryption: the set's data key exists in clear only inside these
 * activities; workflows and manifests carry it wrapped by a master key.
 */
import { Context } from '@temporalio/activity';
import type { ComponentConfig } from '../src/config.ts';
import { ENCRYPTION_ALGORITHM, generateDataKey, unwrapDataKey, wrapDataKey } from '../src/crypto.ts';
import { InvalidInputError } from '../src/errors.ts';
import { RateCap } from '../src/streams.ts';
import type { Component, SetEncryption } from '../src/domain/manifest.ts';
import { backupPrefix, ENCRYPTED_SUFFIX } from '../src/domain/names.ts';
import type { ActivityDeps } from './index.ts';
import type { ArtifactOptions } from './artifacts.ts';
import { driverFor } from './components/index.ts';
import type { AnyDriver, DriverContext } from './components/driver.ts';
import { startHeartbeats, type TransferProgress } from './progress.ts';

export interface ComponentStepInput {
  /** The system whose places are read or written. */
  system: string;
  /** The system whose bucket and master keys hold the set (another one when recovering elsewhere). */
  setSystem?: string;
  component: Component;
  encryption?: SetEncryption;
  /** Names what a restore creates beside the live data (derived from the workflow). */
  tag: string;
}

export interface PlannedComponent {
  name: string;
  kind: Component['kind'];
  detail: string;
}

/**
 * Runs `fn` with a driver context for `system`: the set's store and data key
 * (of `setSystem`, where the set lives), and progress that is heartbeated.
 */
export async function withDriverContext<T>(
  { systems, postgres }: ActivityDeps,
  where: { system: string; setSystem?: string; encryption?: SetEncryption; step: string },
  fn: (ctx: DriverContext) => Promise<T>,
): Promise<T> {
  const setSystem = where.setSystem ?? where.system;
  const progress: TransferProgress = { step: where.step, bytesIn: 0, bytesOut: 0 };
  const stopHeartbeats = startHeartbeats(progress);
  const signal = Context.current().cancellationSignal;
  try {
    const dataKey = where.encryption ? unwrapDataKey(where.encryption.wrappedKey, await systems.masterKeys(setSystem)) : undefined;
    const bytesPerSecond = systems.transferLimit(where.system);
    const artifacts: ArtifactOptions = {
      store: systems.store(setSystem),
      dataKey,
      compressionLevel: systems.compressionLevel(where.system),
      rateCap: bytesPerSecond ? new RateCap(bytesPerSecond) : undefined,
      signal,
      progress,
    };
    return await fn({ systems, postgres, system: where.system, signal, progress, artifacts });
  } finally {
    stopHeartbeats();
  }
}

export function setActivities(deps: ActivityDeps) {
  const { systems } = deps;

  /** The target's config for a component of the set: same name, same kind. */
  function placeFor(system: string, component: Component): ComponentConfig {
    const config = systems.component(system, component.name);
    if (config.kind !== component.kind) {
      throw new InvalidInputError(`component "${component.name}" is ${component.kind} in the backup but ${config.kind} in systems.${system}.backup.components`);
    }
    return config;
  }

  /** A component step (stage, swapIn, swapBack, discard) for the component's kind. */
  function restoreStep<S extends 'stage' | 'swapIn' | 'swapBack' | 'discard'>(step: S) {
    return async (input: ComponentStepInput): Promise<Awaited<ReturnType<AnyDriver[S]>>> => {
      const where = { system: input.system, setSystem: input.setSystem, encryption: input.encryption, step: `${step} ${input.component.name}` };
      return withDriverContext(deps, where, (ctx) =>
        (driverFor(input.component.kind)[step] as AnyDriver['stage'])(ctx, input.component, placeFor(input.system, input.component), input.tag),
      ) as Promise<Awaited<ReturnType<AnyDriver[S]>>>;
    };
  }

  return {
    /** What a backup of the system would read: each component checked, in config order. */
    async planBackup(input: { system: string }): Promise<{ components: PlannedComponent[]; encryptedWith?: string }> {
      const planned: PlannedComponent[] = [];
      for (const config of systems.components(input.system)) {
        const detail = await withDriverContext(deps, { system: input.system, step: `check ${config.name}` }, (ctx) => driverFor(config.kind).check(ctx, config));
        planned.push({ name: config.name, kind: config.kind, detail });
      }
      if (!planned.length) throw new InvalidInputError(`system "${input.system}" has nothing to back up: configure backup.components or a postgres section`);
      return { components: planned, encryptedWith: systems.currentMasterKeyId(input.system) };
    },

    /** A fresh data key for a set, returned only wrapped by the current master key (or nothing: no encryption). */
    async createSetKey(input: { system: string }): Promise<SetEncryption | undefined> {
      const keyId = systems.currentMasterKeyId(input.system);
      if (keyId === undefined) return undefined;
      const master = (await systems.masterKeys(input.system)).get(keyId)!;
      return { algorithm: ENCRYPTION_ALGORITHM, wrappedKey: wrapDataKey(generateDataKey(), { id: keyId, key: master }) };
    },

    /** One component into the set's folder; the same set and name always write the same key. */
    async backupComponent(input: { system: string; backupId: string; name: string; encryption?: SetEncryption }): Promise<Component> {
      const config = systems.component(input.system, input.name);
      const driver = driverFor(config.kind);
      const key = backupPrefix(systems.s3Prefix(input.system), input.system, input.backupId) + driver.fileName(config) + (input.encryption ? ENCRYPTED_SUFFIX : '');
      return withDriverContext(deps, { system: input.system, encryption: input.encryption, step: `backup ${config.name}` }, (ctx) =>
        driver.backup(ctx, config, key),
      );
    },

    stageComponent: restoreStep('stage'),
    swapInComponent: restoreStep('swapIn'),
    swapBackComponent: restoreStep('swapBack'),
    discardComponent: restoreStep('discard'),

    /**
     * Empties a scratch system after a drill recovered a set of `setSystem`
     * into it: components inside pods first (while the pods are there), the
     * namespace last. Refused for a system not marked scratch.
     */
    async tearDownScratch(input: { system: string; setSystem: string; tag: string }): Promise<Record<string, string>> {
      if (!systems.get(input.system).recovery.scratch) {
        throw new InvalidInputError(`system "${input.system}" is not marked recovery.scratch: true; a drill empties only scratch systems`);
      }
      const rank = (c: ComponentConfig) => ('pod' in c && c.pod ? 0 : c.kind === 'kubernetes' ? 2 : 1);
      const removed: Record<string, string> = {};
      for (const config of [...systems.components(input.system)].sort((a, b) => rank(a) - rank(b))) {
        const where = { system: input.system, setSystem: input.setSystem, step: `tear down ${config.name}` };
        removed[config.name] = await withDriverContext(deps, where, (ctx) => driverFor(config.kind).tearDown(ctx, config, input.tag));
      }
      return removed;
    },

    /** Restores a component into a scratch place, compares it with the manifest, and removes the scratch place. */
    async verifyComponent(input: { system: string; setSystem?: string; component: Component; encryption?: SetEncryption }): Promise<string> {
      return withDriverContext(deps, { system: input.system, setSystem: input.setSystem, encryption: input.encryption, step: `verify ${input.component.name}` }, (ctx) =>
        driverFor(input.component.kind).verify(ctx, input.component),
      );
    },
  };
}
