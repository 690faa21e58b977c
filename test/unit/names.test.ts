import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { backupIdFor, backupPrefix, isBackupId, recoveryDatabaseName, retiredDatabaseName, shortHash } from '../../src/domain/names.ts';
import { compareRowCounts } from '../../src/domain/manifest.ts';
import { redact, rememberSecret } from '../../src/secrets.ts';

describe('derived names', () => {
  it('a backup ID is the start time plus a hash of the workflow ID: same run, same ID', () => {
    const at = new Date('2026-11-23T02:00:05.123Z');
    const id = backupIdFor(at, 'backup/shop/x');
    assert.match(id, /^20261123T020005Z-[0-9a-z]{6}$/);
    assert.equal(backupIdFor(at, 'backup/shop/x'), id);
    assert.notEqual(backupIdFor(at, 'backup/shop/y'), id);
    assert.ok(isBackupId(id));
  });

  it('keys follow <prefix>/<system>/<YYYY>/<MM>/<DD>/<id>/', () => {
    assert.equal(backupPrefix('backups/', 'shop', '20261123T020005Z-abc123'), 'backups/shop/2026/11/23/20261123T020005Z-abc123/');
    assert.equal(backupPrefix('', 'shop', '20261123T020005Z-abc123'), 'shop/2026/11/23/20261123T020005Z-abc123/');
    assert.throws(() => backupPrefix('b', 'shop', '../../etc'), /malformed backup ID/);
    for (const bad of ['latest', '20261123-abc123', '20261123T020005Z-ABC123', '20261123T020005Z-abc123/..']) assert.equal(isBackupId(bad), false, bad);
  });

  it('scratch and retired database names stay within PostgreSQL’s 63 characters', () => {
    const long = 'a'.repeat(63);
    assert.ok(recoveryDatabaseName(long, 'run').length <= 63);
    assert.ok(retiredDatabaseName(long).length <= 63);
    assert.equal(recoveryDatabaseName('shop', 'run-1'), `shop_restore_${shortHash('run-1')}`);
    assert.equal(retiredDatabaseName('shop'), 'shop_old');
  });

  it('row count comparison reports changed, missing and extra tables', () => {
    assert.deepEqual(compareRowCounts({ 'a.x': 1, 'a.y': 2 }, { 'a.x': 1, 'a.y': 2 }), []);
    assert.deepEqual(compareRowCounts({ 'a.x': 1, 'a.y': 2 }, { 'a.x': 5, 'a.z': 0 }), [
      { table: 'a.x', expected: 1, actual: 5 },
      { table: 'a.y', expected: 2, actual: null },
      { table: 'a.z', expected: null, actual: 0 },
    ]);
  });

  it('redacts URL passwords and remembered secrets', () => {
    assert.equal(redact('connect postgresql://app:s3cr3t@db:5432/x failed'), 'connect postgresql://app:***@db:5432/x failed');
    rememberSecret('AKIAEXAMPLESECRET');
    assert.equal(redact('key AKIAEXAMPLESECRET rejected'), 'key *** rejected');
  });
});
