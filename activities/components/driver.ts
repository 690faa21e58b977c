/**
 * A component driver backs up one kind of data (PostgreSQL, Redis, files,
 * Kubernetes objects, SQLite) and restores it in four idempotent steps, so a
 * workflow can restore several components as one and undo them together:
 *
 *   stage     restore beside the live data (a recovery database, a staged
 *             directory, a spare Redis database) and check it against the
 *             manifest; nothing live changes
 *   swapIn    make the staged copy live, keeping the previous one
 *   swapBack  undo swapIn: the previous copy live again
 *   discard   drop whatever stage and swapIn left (the commit, or the cleanup)
 *
 * `verify` restores into a scratch place, compares with the manifest and
 * removes it: the deep check of a set, and the data half of a restore drill.
 * `tearDown` empties the component's place in a scratch system after a drill
 * recovered the whole set into it.
 */
import type { PostgresAdapter } from '../../src/adapters/postgres.ts';
import type { ComponentConfig } from '../../src/config.ts';
import type { Component, ComponentKind } from '../../src/domain/manifest.ts';
import type { Systems } from '../../src/systems.ts';
import type { ArtifactOptions, StoredArtifact } from '../artifacts.ts';
import type { TransferProgress } from '../progress.ts';

export interface DriverContext {
  systems: Systems;
  postgres: PostgresAdapter;
  /** The system whose places (database, Redis, paths, namespace) are read or written. */
  system: string;
  signal: AbortSignal;
  progress: TransferProgress;
  /** Store, data key, compression and rate cap for this system's objects. */
  artifacts: ArtifactOptions;
}

export type ConfigOf<K extends ComponentKind> = Extract<ComponentConfig, { kind: K }>;
export type ComponentOf<K extends ComponentKind> = Extract<Component, { kind: K }>;

/** What every component record starts with: the stored object and the times. */
export type StoredFields = StoredArtifact & { name: string; startedAt: string; completedAt: string };

export interface Driver<K extends ComponentKind> {
  /** File name of the stored object in the set's folder (before any `.enc`). */
  fileName(config: ConfigOf<K>): string;
  /** A cheap check that the source answers; a sentence for the plan. */
  check(ctx: DriverContext, config: ConfigOf<K>): Promise<string>;
  backup(ctx: DriverContext, config: ConfigOf<K>, key: string): Promise<ComponentOf<K>>;
  stage(ctx: DriverContext, component: ComponentOf<K>, config: ConfigOf<K>, tag: string): Promise<string>;
  swapIn(ctx: DriverContext, component: ComponentOf<K>, config: ConfigOf<K>, tag: string): Promise<void>;
  swapBack(ctx: DriverContext, component: ComponentOf<K>, config: ConfigOf<K>, tag: string): Promise<void>;
  discard(ctx: DriverContext, component: ComponentOf<K>, config: ConfigOf<K>, tag: string): Promise<void>;
  verify(ctx: DriverContext, component: ComponentOf<K>): Promise<string>;
  /** Removes what lives in the place (and what restore `tag` left beside it); only ever called for a scratch system. A sentence for the report. */
  tearDown(ctx: DriverContext, config: ConfigOf<K>, tag: string): Promise<string>;
}

/**
 * A driver as code that holds a component of any kind sees it: the
 * activities look the kind up at run time, and a component and its config
 * always share it (checked by the caller).
 */
export interface AnyDriver {
  fileName(config: ComponentConfig): string;
  check(ctx: DriverContext, config: ComponentConfig): Promise<string>;
  backup(ctx: DriverContext, config: ComponentConfig, key: string): Promise<Component>;
  stage(ctx: DriverContext, component: Component, config: ComponentConfig, tag: string): Promise<string>;
  swapIn(ctx: DriverContext, component: Component, config: ComponentConfig, tag: string): Promise<void>;
  swapBack(ctx: DriverContext, component: Component, config: ComponentConfig, tag: string): Promise<void>;
  discard(ctx: DriverContext, component: Component, config: ComponentConfig, tag: string): Promise<void>;
  verify(ctx: DriverContext, component: Component): Promise<string>;
  tearDown(ctx: DriverContext, config: ComponentConfig, tag: string): Promise<string>;
}

export function describeCounts(counts: Record<string, number>): string {
  const total = Object.values(counts).reduce((a, b) => a + b, 0);
  return `${Object.keys(counts).length} tables, ${total} rows`;
}
