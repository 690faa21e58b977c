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
export const POSTGRES_DUMP_FILE = 'postgres.dump.zst';

/** The scratch database a restore loads into before anything live is touched. */
export function recoveryDatabaseName(live: string, runId: string): string {
  return `${live.slice(0, 46)}_restore_${shortHash(runId)}`;
}

/** Where the live database goes when a restore swaps in place; kept for rollback. */
export function retiredDatabaseName(live: string): string {
  return `${live.slice(0, 59)}_old`;
}

/** Workflow IDs double as locks: one restore per target database at a time. */
export const workflowIds = {
  backup: (system: string, at: Date) => `backup/${system}/${at.toISOString().replace(/[-:]/g, '').replace(/\.\d{3}Z$/, 'Z')}`,
  restore: (system: string, database: string) => `restore/${system}/${database}`,
  maintenance: (system: string) => `maintenance/${system}`,
  deploy: (system: string) => `deploy/${system}`,
};
