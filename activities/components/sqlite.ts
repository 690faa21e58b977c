/**
 * SQLite with its online backup API (`.backup`), never a plain copy of a
 * live file. A restore downloads the copy beside the live file (on the
 * worker, or in the pod through the exec API), checks its integrity and row
 * counts, then renames it into place (the previous file kept until the
 * restore commits).
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import {
  discardSqliteInPod,
  discardSqlitePrevious,
  inspectSqlite,
  removeSqlite,
  removeSqliteInPod,
  restoreSqlite,
  sqliteSnapshot,
  sqliteSnapshotInPod,
  stageSqliteInPod,
  swapBackSqliteInPod,
  swapInSqliteInPod,
  undoRestoreSqlite,
  type PodSqliteTarget,
  type SqliteInfo,
} from '../../src/adapters/sqlite.ts';
import type { PodExec } from '../../src/adapters/kubernetes/exec.ts';
import { withScratchDir } from '../../src/scratch.ts';
import { IntegrityError } from '../../src/errors.ts';
import { compareRowCounts, describeRowCountMismatches } from '../../src/domain/manifest.ts';
import { consumeDownload, downloadArtifact, uploadArtifact } from '../artifacts.ts';
import { describeCounts, type ComponentOf, type ConfigOf, type Driver, type DriverContext } from './driver.ts';
import { podTarget, tearDownInPod } from './pods.ts';

type SqliteComponent = ComponentOf<'sqlite'>;

/** Where a restore downloads the copy: beside the live file, so the final rename stays on one filesystem. */
function downloadPath(config: ConfigOf<'sqlite'>, tag: string): string {
  return join(dirname(config.path), `.${config.name}.opsflow-download-${tag}`);
}

/** Downloads the component into `file` and checks it: integrity, and row counts equal to the manifest's. */
async function fetchChecked(ctx: DriverContext, component: SqliteComponent, file: string): Promise<SqliteInfo> {
  await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) => pipeline(stream, createWriteStream(file)));
  const info = await inspectSqlite(file);
  checkCounts(component, info);
  return info;
}

function checkCounts(component: SqliteComponent, info: SqliteInfo): void {
  const mismatches = compareRowCounts(component.rowCounts, info.tables);
  if (mismatches.length) throw new IntegrityError(`${component.name}: ${describeRowCountMismatches(mismatches)}`);
}

/** The database inside a pod, with the exec API to reach it; undefined for one on the worker. */
async function podOf(ctx: DriverContext, config: ConfigOf<'sqlite'>): Promise<{ exec: PodExec; at: PodSqliteTarget } | undefined> {
  if (!config.pod) return undefined;
  const at = await podTarget(ctx, config.pod, config.path);
  return { exec: (await ctx.systems.kubernetes(ctx.system)).exec, at };
}

export const sqliteDriver: Driver<'sqlite'> = {
  fileName: (config) => `${config.name}.sqlite.zst`,

  async check(ctx, config) {
    if (config.pod) {
      const place = await podTarget(ctx, config.pod, config.path);
      return `SQLite ${config.path} in pod ${place.namespace}/${place.pod}`;
    }
    const info = await inspectSqlite(config.path);
    return `SQLite ${config.path}: ${describeCounts(info.tables)}`;
  },

  async backup(ctx, config, key) {
    const startedAt = new Date().toISOString();
    if (config.pod) {
      const place = await podTarget(ctx, config.pod, config.path);
      const snap = sqliteSnapshotInPod((await ctx.systems.kubernetes(ctx.system)).exec, place, { signal: ctx.signal });
      const stored = await uploadArtifact(key, snap.stream as AsyncIterable<Buffer>, snap.done, ctx.artifacts);
      const info = await snap.info;
      return { ...stored, kind: 'sqlite', name: config.name, source: `pod:${place.namespace}/${config.pod.workload}/${place.container}:${config.path}`, format: 'sqlite-backup', sqliteVersion: info.sqliteVersion, rowCounts: info.tables, startedAt, completedAt: new Date().toISOString() };
    }
    return withScratchDir('sqlite', async (dir) => {
      const copy = join(dir, 'backup.sqlite');
      const info = await sqliteSnapshot(config.path, copy, { signal: ctx.signal });
      const stored = await uploadArtifact(key, createReadStream(copy), Promise.resolve(), ctx.artifacts);
      return { ...stored, kind: 'sqlite', name: config.name, source: config.path, format: 'sqlite-backup', sqliteVersion: info.sqliteVersion, rowCounts: info.tables, startedAt, completedAt: new Date().toISOString() };
    });
  },

  async stage(ctx, component, config, tag) {
    const pod = await podOf(ctx, config);
    if (pod) {
      const info = await consumeDownload(downloadArtifact(component, ctx.artifacts), (stream: Readable) =>
        stageSqliteInPod(pod.exec, pod.at, tag, stream, { expectedBytes: component.rawBytes, signal: ctx.signal }),
      );
      checkCounts(component, info);
      return `${describeCounts(info.tables)} checked beside ${config.path} in pod ${pod.at.namespace}/${pod.at.pod}, as in the manifest`;
    }
    await mkdir(dirname(config.path), { recursive: true }); // new infrastructure: not there yet
    const info = await fetchChecked(ctx, component, downloadPath(config, tag));
    return `${describeCounts(info.tables)} checked beside ${config.path}, as in the manifest`;
  },

  async swapIn(ctx, _component, config, tag) {
    const pod = await podOf(ctx, config);
    if (pod) await swapInSqliteInPod(pod.exec, pod.at, tag, { signal: ctx.signal });
    else await restoreSqlite(config.path, downloadPath(config, tag), tag);
  },

  async swapBack(ctx, _component, config, tag) {
    const pod = await podOf(ctx, config);
    if (pod) await swapBackSqliteInPod(pod.exec, pod.at, tag, { signal: ctx.signal });
    else await undoRestoreSqlite(config.path, tag);
  },

  async discard(ctx, _component, config, tag) {
    const pod = await podOf(ctx, config);
    if (pod) return discardSqliteInPod(pod.exec, pod.at, tag, { signal: ctx.signal });
    await discardSqlitePrevious(config.path, tag);
    await rm(downloadPath(config, tag), { force: true });
  },

  async tearDown(ctx, config, tag) {
    if (config.pod) return tearDownInPod(ctx, config.pod, config.path, (exec, at) => removeSqliteInPod(exec, at, tag, { signal: ctx.signal }));
    await removeSqlite(config.path, tag);
    await rm(downloadPath(config, tag), { force: true });
    return `${config.path} removed`;
  },

  async verify(ctx, component) {
    return withScratchDir('verify', async (dir) => {
      const info = await fetchChecked(ctx, component, join(dir, 'copy.sqlite'));
      return `integrity ok, ${describeCounts(info.tables)}, as in the manifest`;
    });
  },
};
