/** Every component kind's driver, by kind. */
import type { ComponentKind } from '../../src/domain/manifest.ts';
import type { Driver } from './driver.ts';
import { filesDriver } from './files.ts';
import { kubernetesDriver } from './kubernetes.ts';
import { postgresDriver } from './postgres.ts';
import { redisDriver } from './redis.ts';
import { sqliteDriver } from './sqlite.ts';

const drivers: { [K in ComponentKind]: Driver<K> } = {
  postgres: postgresDriver,
  redis: redisDriver,
  files: filesDriver,
  kubernetes: kubernetesDriver,
  sqlite: sqliteDriver,
};

export function driverFor<K extends ComponentKind>(kind: K): Driver<K> {
  return drivers[kind];
}
