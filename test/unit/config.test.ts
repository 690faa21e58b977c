import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { parse } from 'yaml';
import { readFileSync } from 'node:fs';
import { getSystem, parseConfig } from '../../src/config.ts';
import { ConfigError, NotFoundError } from '../../src/errors.ts';
import { BED_CONFIG } from '../../deploy/bed/bed.ts';

function errorOf(raw: unknown): string {
  try {
    parseConfig(raw, 'opsflow.yaml');
  } catch (err) {
    assert.ok(err instanceof ConfigError);
    return err.message;
  }
  assert.fail('expected a ConfigError');
}

describe('config', () => {
  it('parses the bed config, ignoring x- anchor keys and filling defaults', () => {
    const config = parseConfig(parse(readFileSync(BED_CONFIG, 'utf8')));
    assert.deepEqual(Object.keys(config.systems), ['demo']);
    assert.deepEqual(config.systems.demo!.postgres!.url, { env: 'DEMO_DATABASE_URL' });
    assert.equal(config.systems.demo!.s3.prefix, 'backups');
    assert.equal(config.temporal.taskQueue, 'opsflow');
  });

  it('names the path of every missing field', () => {
    const message = errorOf({ version: 1, systems: { shop: { postgres: {}, s3: {} } } });
    assert.match(message, /^opsflow\.yaml: /);
    assert.match(message, /systems\.shop\.postgres\.url: /);
    assert.match(message, /systems\.shop\.s3\.bucket: required/);
  });

  it('refuses an inline secret and does not echo it', () => {
    const message = errorOf({ version: 1, systems: { shop: { postgres: { url: 'postgresql://u:hunter22@h/db' }, s3: { bucket: 'b' } } } });
    assert.match(message, /systems\.shop\.postgres\.url: must be a reference/);
    assert.ok(!message.includes('hunter22'));
  });

  it('refuses unknown keys and bad system names', () => {
    assert.match(errorOf({ version: 1, systems: { shop: { s3: { bucket: 'b' }, postgress: {} } } }), /postgress/);
    assert.match(errorOf({ version: 1, systems: { 'Bad Name': { s3: { bucket: 'b' } } } }), /system names are lower-case/);
    assert.match(errorOf({ version: 2, systems: {} }), /version/);
  });

  it('an unknown system lists the configured ones', () => {
    const config = parseConfig({ version: 1, systems: { a: { s3: { bucket: 'b' } }, b: { s3: { bucket: 'b' } } } });
    assert.throws(() => getSystem(config, 'c'), (err: Error) => err instanceof NotFoundError && /unknown system "c" \(configured: a, b\)/.test(err.message));
  });

  it('a drill goes only into another system marked scratch', () => {
    const systems = (recovery: object, scratch: object = { scratch: true }) => ({ version: 1, systems: { app: { s3: { bucket: 'b' }, recovery }, rehearsal: { s3: { bucket: 'b' }, recovery: scratch } } });
    assert.equal(parseConfig(systems({ drillInto: 'rehearsal' })).systems.app!.recovery.drillInto, 'rehearsal');
    assert.match(errorOf(systems({ drillInto: 'rehearsal' }, {})), /systems\.app\.recovery\.drillInto: "rehearsal" is not marked recovery\.scratch: true/);
    assert.match(errorOf(systems({ drillInto: 'nowhere' })), /systems\.app\.recovery\.drillInto: unknown system "nowhere"/);
    assert.match(errorOf(systems({ drillInto: 'app' })), /systems\.app\.recovery\.drillInto: a system cannot drill into itself/);
  });

  it('overrides of restored objects: a ConfigMap value may be plain, a Secret value only a reference', () => {
    const system = (data: object, kind = 'Secret') => ({
      version: 1,
      systems: { app: { s3: { bucket: 'b' }, kubernetes: { namespace: 'app', workloads: [{ kind: 'Deployment', name: 'api' }] }, backup: { components: [{ kind: 'kubernetes', overrides: [{ kind, name: 'app-secrets', data }] }] } } },
    });
    assert.ok(parseConfig(system({ DB_PASSWORD: { env: 'DRILL_DB_PASSWORD' } })));
    assert.ok(parseConfig(system({ DATABASE_NAME: 'app_drill' }, 'ConfigMap')));
    const message = errorOf(system({ DB_PASSWORD: 'hunter22' }));
    assert.match(message, /systems\.app\.backup\.components\.0\.overrides\.0\.data\.DB_PASSWORD: a Secret's value must be a reference/);
    assert.ok(!message.includes('hunter22'));
  });
});

