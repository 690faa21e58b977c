/**
 * Names derived from workflow identity: backup IDs, object keys, scratch
 * database names. Deterministic and pure, so workflows (in the sandbox) and
 * activities (in the worker) derive the same names, and a retried step finds
 * what an earlier attempt made instead of making a second one.
 */

export const SYSTEM_NAME_PATTERN = /^[a-z][a-z0-9-]{0,39}$/;
/** `20261123T142501Z-k3x9qa`: the start time (sorts by age) and a hash of the run. */
export const BACKUP_ID_PATTERN = /^(\d{4})(\d{2})(\d{2})T\d{6}Z-[0-9a-z]{6}$/;
/** PostgreSQL identifiers opsflow creates or accepts: plain lower-case names. */
export const DATABASE_NAME_PATTERN = /^[a-z_][a-z0-9_]{0,62}$/;

/** FNV-1a, base36, 6 characters: short, stable, good enough to tell runs apart. */
export function shortHash(text: string): string {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash.toString(36).padStart(6, '0').slice(-6);
}

export function backupIdFor(startTime: Date, workflowId: string): string {
  const stamp = startTime.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z');
  return `${stamp}-${shortHash(workflowId)}`;
}

export function isBackupId(text: string): boolean {
  return BACKUP_ID_PATTERN.test(text);
}

/** Where a backup set lives: `<prefix>/<system>/<YYYY>/<MM>/<DD>/<id>/`. */
export function backupPrefix(prefix: string, system: string, backupId: string): string {
  const m = BACKUP_ID_PATTERN.exec(backupId);
  if (!m) throw new Error(`malformed backup ID "${backupId}"`);
  const root = prefix.replace(/\/+$/, '');
  return `${root ? `${root}/` : ''}${system}/${m[1]}/${m[2]}/${m[3]}/${backupId}/`;
}

export function systemPrefix(prefix: string, system: string): string {
  const root = prefix.replace(/\/+$/, '');
  return `${root ? `${root}/` : ''}${system}/`;
}

export const MANIFEST_FILE = 'manifest.json';
/** Written beside the manifest by a deep verification; `latest-verified` picks sets with one. */
export const VERIFIED_FILE = 'verified.json';
/** Present while a set is pinned: retention never deletes it. */
export const PINNED_FILE = 'pinned.json';
/** Suffix of an object encrypted with its set's data key. */
export const ENCRYPTED_SUFFIX = '.enc';
export const POSTGRES_DUMP_FILE = 'postgres.dump.zst';

/** The scratch database a restore loads into before anything live is touched. */
export function recoveryDatabaseName(live: string, runId: string): string {
  return `${live.slice(0, 46)}_restore_${shortHash(runId)}`;
}

/**
 * Where the live database goes when a restore swaps in place; kept for
 * rollback. Named after the run (`<live>_old_<hash>`) so a later restore never
 * collides with it; without a run, the single `<live>_old` of format-1 restores.
 */
export function retiredDatabaseName(live: string, runId?: string): string {
  return runId === undefined ? `${live.slice(0, 59)}_old` : `${live.slice(0, 52)}_old_${shortHash(runId)}`;
}

/** A scratch database for verifying a set or a drill: dropped when it is done. */
export function scratchDatabaseName(live: string, runId: string): string {
  return `${live.slice(0, 47)}_verify_${shortHash(runId)}`;
}

/** A scratch namespace for verifying a set's Kubernetes objects: deleted when it is done. */
export function scratchNamespaceName(live: string, runId: string): string {
  return `${live.slice(0, 47)}-verify-${shortHash(runId)}`;
}

/** Where a restore keeps what it replaced (Kubernetes objects) until it commits. */
export function restoreScratchPrefix(prefix: string, system: string, tag: string): string {
  return `${systemPrefix(prefix, system)}restores/${tag}/`;
}

/** Workflow IDs double as locks: one restore per target database at a time. */
export const workflowIds = {
  backup: (system: string, at: Date) => `backup/${system}/${at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}`,
  restore: (system: string, database: string) => `restore/${system}/${database}`,
  /** One restore or disaster recovery of a system's live places at a time. */
  recovery: (system: string) => `recover/${system}`,
  verify: (system: string, backupId: string) => `verify/${system}/${backupId}`,
  drill: (system: string) => `drill/${system}`,
  retention: (system: string) => `retention/${system}`,
  maintenance: (system: string) => `maintenance/${system}`,
  deploy: (system: string) => `deploy/${system}`,
};
