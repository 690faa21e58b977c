/**
 * Where a drill may recover into: a drill empties that system afterwards, so
 * it must be marked scratch and share no database, Redis database, namespace
 * or path with the system drilled.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parseConfig } from '../../src/config.ts';
import { InvalidInputError } from '../../src/errors.ts';
import { Systems } from '../../src/systems.ts';
import { recoveryActivities } from '../../activities/recovery.ts';

process.env.APP_DB = 'postgresql://u:p@db.internal:5432/app';
process.env.APP_REDIS = 'redis://cache.internal:6379/0';

function drillPlace(rehearsal: { db?: string; redis?: string; path?: string; scratch?: boolean; namespace?: string }, into?: string) {
  process.env.REHEARSAL_DB = rehearsal.db ?? 'postgresql://u:p@db.internal:5432/app_drill';
  process.env.REHEARSAL_REDIS = rehearsal.redis ?? 'redis://cache.internal:6379/5';
  const system = (db: string, redis: string, path: string, namespace: string, stagingDb: number, recovery: object) => ({
    postgres: { url: { env: db } },
    redis: { url: { env: redis } },
    kubernetes: { namespace, workloads: [{ kind: 'Deployment', name: 'api' }] },
    s3: { bucket: 'b' },
    backup: { components: [{ kind: 'postgres' }, { kind: 'redis', name: 'cache', stagingDb }, { kind: 'files', name: 'data', path }] },
    recovery,
  });
  const config = parseConfig({
    version: 1,
    systems: {
      app: system('APP_DB', 'APP_REDIS', '/srv/app/data', 'app', 15, {}),
      rehearsal: system('REHEARSAL_DB', 'REHEARSAL_REDIS', rehearsal.path ?? '/srv/drill/data', rehearsal.namespace ?? 'app-drill', 14, { scratch: rehearsal.scratch ?? true }),
    },
  });
  return recoveryActivities({ systems: new Systems(config) }).drillPlace({ system: 'app', into });
}

const refused = (pattern: RegExp) => (err: unknown) => err instanceof InvalidInputError && pattern.test(err.message);

describe('drill place', () => {
  it('a scratch system of its own places is accepted; none asked and none configured is none', async () => {
    assert.equal(await drillPlace({}, 'rehearsal'), 'rehearsal');
    assert.equal(await drillPlace({}), undefined);
  });

  it('is refused when it is not marked scratch, or is the system itself', async () => {
    await assert.rejects(drillPlace({ scratch: false }, 'rehearsal'), refused(/^into: system "rehearsal" is not marked recovery\.scratch: true/));
    await assert.rejects(drillPlace({}, 'app'), refused(/cannot recover into the system itself/));
  });

  it('is refused when it shares a database, a Redis database, a namespace or a path, naming each', async () => {
    await assert.rejects(drillPlace({ db: 'postgresql://other:secret@db.internal/app' }, 'rehearsal'), refused(/shares places with "app" \(PostgreSQL database db\.internal:5432\/app\)/));
    await assert.rejects(drillPlace({ redis: 'redis://cache.internal:6379/0' }, 'rehearsal'), refused(/Redis database cache\.internal:6379\/0\)/));
    // Its live database is the other's spare one, which a drill would flush too.
    await assert.rejects(drillPlace({ redis: 'redis://cache.internal:6379/15' }, 'rehearsal'), refused(/Redis database cache\.internal:6379\/15\)/));
    await assert.rejects(drillPlace({ namespace: 'app' }, 'rehearsal'), refused(/namespace app \(kubeconfig default, context current\)/));
    await assert.rejects(drillPlace({ path: '/srv/app/data/scratch' }, 'rehearsal'), refused(/paths \/srv\/app\/data\/scratch and \/srv\/app\/data/));
    await assert.rejects(drillPlace({ path: '/srv' }, 'rehearsal'), refused(/paths \/srv and \/srv\/app\/data/));
  });

  it('never names a password', async () => {
    await assert.rejects(drillPlace({ db: 'postgresql://u:hunter22@db.internal:5432/app' }, 'rehearsal'), (err: Error) => !err.message.includes('hunter22'));
  });
});
