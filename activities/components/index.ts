/** Every component kind's driver, by kind. */
import type { ComponentKind } from '../../src/domain/manifest.ts';
import type { AnyDriver, Driver } from './driver.ts';
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

/** The kind's driver; callers pass it a component and config of that same kind. */
export function driverFor(kind: ComponentKind): AnyDriver {
  return drivers[kind] as unknown as AnyDriver;
}
