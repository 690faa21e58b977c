/**
 * The backup catalog is S3 itself: a set exists once its manifest is written,
 * and backup IDs start with their time, so `latest` is the greatest ID. Beside
 * a manifest, `verified.json` records the last deep verification and
 * `pinned.json` keeps the set from retention.
 */
import type { Systems } from '../src/systems.ts';
import { InvalidInputError, NotFoundError, PeerRejectedError } from '../src/errors.ts';
import { formatIssues } from '../src/domain/validation.ts';
import { backupPrefix, isBackupId, MANIFEST_FILE, PINNED_FILE, systemPrefix, VERIFIED_FILE } from '../src/domain/names.ts';
import { manifestSchema, storedBytesOf, type Manifest, type ManifestV1 } from '../src/domain/manifest.ts';
import { applyRetention, type RetentionDecision } from '../src/domain/retention.ts';
import { keepAlive } from './progress.ts';

export interface BackupSummary {
  backupId: string;
  completedAt: string;
  storedBytes: number;
  components: string[];
  encrypted: boolean;
  pinned: boolean;
  /** When a deep verification last passed, if ever. */
  verifiedAt?: string;
}

export interface Verification {
  verifiedAt: string;
  /** Component name → what the check found. */
  components: Record<string, string>;
  workflowId: string;
}

/** `latest`, `latest-verified`, a date (the newest set completed that day, UTC, or before), or a backup ID. */
export type BackupRef = string;
const DATE = /^\d{4}-\d{2}-\d{2}$/;

export function catalogActivities({ systems }: { systems: Systems }) {
  const setPrefix = (system: string, backupId: string) => backupPrefix(systems.s3Prefix(system), system, backupId);

  async function readManifest(system: string, backupId: string): Promise<Manifest> {
    const key = setPrefix(system, backupId) + MANIFEST_FILE;
    const store = systems.store(system);
    if (!(await store.head(key))) throw new NotFoundError(`backup ${backupId} of system "${system}" not found (no ${key})`);
    const parsed = manifestSchema.safeParse(await store.getJson(key));
    if (!parsed.success) throw new PeerRejectedError(`manifest ${key} is malformed: ${formatIssues(parsed.error)}`);
    return parsed.data;
  }

  /** Complete sets (those with a manifest), newest first, with their pin and verification markers. */
  async function catalog(system: string): Promise<{ backupId: string; pinned: boolean; verified: boolean }[]> {
    const sets = new Map<string, { manifest: boolean; pinned: boolean; verified: boolean }>();
    for await (const { key } of systems.store(system).listKeys(systemPrefix(systems.s3Prefix(system), system))) {
      const parts = key.split('/');
      const id = parts.at(-2) ?? '';
      if (!isBackupId(id)) continue;
      const entry = sets.get(id) ?? { manifest: false, pinned: false, verified: false };
      if (parts.at(-1) === MANIFEST_FILE) entry.manifest = true;
      if (parts.at(-1) === PINNED_FILE) entry.pinned = true;
      if (parts.at(-1) === VERIFIED_FILE) entry.verified = true;
      sets.set(id, entry);
    }
    return [...sets.entries()]
      .filter(([, e]) => e.manifest)
      .map(([backupId, e]) => ({ backupId, pinned: e.pinned, verified: e.verified }))
      .sort((a, b) => (a.backupId < b.backupId ? 1 : -1));
  }

  async function resolve(system: string, ref: BackupRef): Promise<string> {
    if (isBackupId(ref)) return ref;
    const sets = await catalog(system);
    let found: string | undefined;
    if (ref === 'latest') found = sets[0]?.backupId;
    else if (ref === 'latest-verified') found = sets.find((s) => s.verified)?.backupId;
    else if (DATE.test(ref)) {
      const endOfDay = ref.replace(/-/g, '') + 'T235959Z';
      found = sets.find((s) => s.backupId.slice(0, 16) <= endOfDay)?.backupId;
    } else throw new InvalidInputError(`backup: "${ref}" is not latest, latest-verified, a date (YYYY-MM-DD) or a backup ID`);
    if (!found) throw new NotFoundError(`system "${system}" has no complete backup${ref === 'latest' ? '' : ` matching ${ref}`} yet`);
    return found;
  }

  async function verificationOf(system: string, backupId: string): Promise<Verification | undefined> {
    const key = setPrefix(system, backupId) + VERIFIED_FILE;
    const store = systems.store(system);
    return (await store.head(key)) ? ((await store.getJson(key)) as Verification) : undefined;
  }

  return {
    /** `latest`, `latest-verified`, a date or a backup ID → its manifest. */
    async findBackup(input: { system: string; backup: BackupRef }): Promise<Manifest> {
      systems.get(input.system);
      return keepAlive('find backup', async () => readManifest(input.system, await resolve(input.system, input.backup)));
    },

    async listBackups(input: { system: string }): Promise<BackupSummary[]> {
      systems.get(input.system);
      const summaries: BackupSummary[] = [];
      for (const set of await catalog(input.system)) {
        const m = await readManifest(input.system, set.backupId);
        summaries.push({
          backupId: set.backupId,
          completedAt: m.completedAt,
          storedBytes: storedBytesOf(m),
          components: m.components.map((c) => c.name),
          encrypted: m.encryption !== undefined,
          pinned: set.pinned,
          verifiedAt: set.verified ? (await verificationOf(input.system, set.backupId))?.verifiedAt : undefined,
        });
      }
      return summaries;
    },

    /** Writing the manifest is what makes a set complete and listed. */
    async writeManifest(input: { manifest: Manifest | ManifestV1 }): Promise<{ key: string }> {
      const { system, backupId } = input.manifest;
      const key = setPrefix(system, backupId) + MANIFEST_FILE;
      await systems.store(system).putJson(key, input.manifest);
      return { key };
    },

    async recordVerification(input: { system: string; backupId: string; verification: Verification }): Promise<void> {
      await systems.store(input.system).putJson(setPrefix(input.system, input.backupId) + VERIFIED_FILE, input.verification);
    },

    /** A drill's outcome, kept in the catalog (`<prefix>/<system>/drills/`) for the drill history and metrics. */
    async recordDrill(input: { system: string; drill: Record<string, unknown> & { at: string } }): Promise<{ key: string }> {
      const key = `${systemPrefix(systems.s3Prefix(input.system), input.system)}drills/${input.drill.at.replace(/[-:.]/g, '')}.json`;
      await systems.store(input.system).putJson(key, input.drill);
      return { key };
    },

    /** The system's recovery point objective in seconds, if it sets one. */
    async rpoTarget(input: { system: string }): Promise<number | undefined> {
      const hours = systems.get(input.system).backup.rpoTargetHours;
      return hours === undefined ? undefined : hours * 3600;
    },

    /** Pins (retention keeps it forever) or unpins a set. */
    async pinBackup(input: { system: string; backup: BackupRef; pinned: boolean; by: string; reason?: string }): Promise<{ backupId: string; pinned: boolean }> {
      const backupId = await resolve(input.system, input.backup);
      await readManifest(input.system, backupId);
      const key = setPrefix(input.system, backupId) + PINNED_FILE;
      const store = systems.store(input.system);
      if (input.pinned) await store.putJson(key, { by: input.by, reason: input.reason, at: new Date().toISOString() });
      else await store.deleteObjects([key]);
      return { backupId, pinned: input.pinned };
    },

    /**
     * The system's retention policy over its sets: which go, and why each
     * stays. Without `dryRun` the sets that go are deleted (manifest first, so
     * a half-deleted set is never listed), and uploads left incomplete by
     * crashed runs are aborted.
     */
    async applyRetention(input: { system: string; dryRun: boolean; now: string }): Promise<{ decisions: RetentionDecision[]; deletedObjects: number; abortedUploads: number }> {
      const policy = systems.get(input.system).backup.retention;
      if (!policy) throw new InvalidInputError(`system "${input.system}" has no retention policy (systems.${input.system}.backup.retention)`);
      const sets = await catalog(input.system);
      const candidates = await Promise.all(
        sets.map(async (s) => ({ ...s, completedAt: (await readManifest(input.system, s.backupId)).completedAt })),
      );
      const decisions = applyRetention(candidates, policy, new Date(input.now));
      if (input.dryRun) return { decisions, deletedObjects: 0, abortedUploads: 0 };
      const store = systems.store(input.system);
      let deletedObjects = 0;
      for (const d of decisions.filter((x) => !x.keep)) {
        const prefix = setPrefix(input.system, d.backupId);
        await store.deleteObjects([prefix + MANIFEST_FILE]);
        const rest: string[] = [];
        for await (const { key } of store.listKeys(prefix)) rest.push(key);
        deletedObjects += 1 + (await store.deleteObjects(rest));
      }
      const abortedUploads = await store.abortIncompleteUploads(systemPrefix(systems.s3Prefix(input.system), input.system));
      return { decisions, deletedObjects, abortedUploads };
    },
  };
}
