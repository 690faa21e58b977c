/**
 * The backup catalog is S3 itself: a set exists once its manifest is written,
 * and backup IDs start with their time, so `latest` is the greatest ID.
 */
import type { Systems } from '../src/systems.ts';
import { InvalidInputError, NotFoundError, PeerRejectedError } from '../src/errors.ts';
import { formatIssues } from '../src/domain/validation.ts';
import { backupPrefix, isBackupId, MANIFEST_FILE, systemPrefix } from '../src/domain/names.ts';
import { manifestSchema, type Manifest } from '../src/domain/manifest.ts';

export interface BackupSummary {
  backupId: string;
  completedAt: string;
  storedBytes: number;
  components: string[];
}

export function catalogActivities({ systems }: { systems: Systems }) {
  async function readManifest(system: string, backupId: string): Promise<Manifest> {
    const key = backupPrefix(systems.s3Prefix(system), system, backupId) + MANIFEST_FILE;
    const store = systems.store(system);
    if (!(await store.head(key))) throw new NotFoundError(`backup ${backupId} of system "${system}" not found (no ${key})`);
    const parsed = manifestSchema.safeParse(await store.getJson(key));
    if (!parsed.success) throw new PeerRejectedError(`manifest ${key} is malformed: ${formatIssues(parsed.error)}`);
    return parsed.data;
  }

  /** IDs of complete sets (those with a manifest), newest first. */
  async function completeBackupIds(system: string): Promise<string[]> {
    const ids: string[] = [];
    for await (const { key } of systems.store(system).listKeys(systemPrefix(systems.s3Prefix(system), system))) {
      const parts = key.split('/');
      if (parts.at(-1) === MANIFEST_FILE && isBackupId(parts.at(-2) ?? '')) ids.push(parts.at(-2)!);
    }
    return ids.sort().reverse();
  }

  return {
    /** `latest` or a backup ID → its manifest. */
    async findBackup(input: { system: string; backup: string }): Promise<Manifest> {
      systems.get(input.system);
      if (input.backup === 'latest') {
        const [newest] = await completeBackupIds(input.system);
        if (!newest) throw new NotFoundError(`system "${input.system}" has no complete backup yet`);
        return readManifest(input.system, newest);
      }
      if (!isBackupId(input.backup)) throw new InvalidInputError(`malformed backup ID "${input.backup}"`);
      return readManifest(input.system, input.backup);
    },

    async listBackups(input: { system: string }): Promise<BackupSummary[]> {
      systems.get(input.system);
      const summaries: BackupSummary[] = [];
      for (const id of await completeBackupIds(input.system)) {
        const m = await readManifest(input.system, id);
        const components = Object.values(m.components).filter((c) => c !== undefined);
        summaries.push({
          backupId: id,
          completedAt: m.completedAt,
          storedBytes: components.reduce((n, c) => n + c.storedBytes, 0),
          components: components.map((c) => c.kind),
        });
      }
      return summaries;
    },

    /** Writing the manifest is what makes a set complete and listed. */
    async writeManifest(input: { manifest: Manifest }): Promise<{ key: string }> {
      const { system, backupId } = input.manifest;
      const key = backupPrefix(systems.s3Prefix(system), system, backupId) + MANIFEST_FILE;
      await systems.store(system).putJson(key, input.manifest);
      return { key };
    },
  };
}
