/**
 * PostgreSQL activities: check, dump to S3, restore from S3, count rows, and
 * the database renames a restore swaps with. Each is idempotent: names derive
 * from the workflow, state is checked before acting, "already done" succeeds.
 */
import { createHash } from 'node:crypto';
import { Context } from '@temporalio/activity';
import type { Readable } from 'node:stream';
import type { PostgresAdapter } from '../src/adapters/postgres.ts';
import { databaseOf, withDatabase } from '../src/adapters/postgres.ts';
import { startByteCounter, startTool } from '../src/adapters/process.ts';
import type { Systems } from '../src/systems.ts';
import { IntegrityError } from '../src/errors.ts';
import { backupPrefix, POSTGRES_DUMP_FILE } from '../src/domain/names.ts';
import type { PostgresComponent } from '../src/domain/manifest.ts';
import { startHeartbeats } from './progress.ts';
import { feed, tap, throttle } from '../src/streams.ts';

export interface PostgresDeps {
  systems: Systems;
  postgres: PostgresAdapter;
}

export function postgresActivities({ systems, postgres }: PostgresDeps) {
  return {
    /** The system exists and its database answers; what a backup would read. */
    async checkPostgres(input: { system: string }) {
      return postgres.serverInfo(systems.postgresUrl(input.system));
    },

    /**
     * pg_dump (custom format) → zstd → SHA-256 → S3 multipart, streamed; row
     * counts from the same snapshot. The object is completed only after
     * pg_dump and zstd exit cleanly, so a failed dump never looks complete.
     */
    async backupPostgres(input: { system: string; backupId: string }): Promise<PostgresComponent> {
      const { system, backupId } = input;
      const signal = Context.current().cancellationSignal;
      const url = systems.postgresUrl(system);
      const store = systems.store(system);
      const key = backupPrefix(systems.s3Prefix(system), system, backupId) + POSTGRES_DUMP_FILE;

      // A retry after a crash: the earlier attempt's upload can't be resumed
      // (a new pg_dump is a new stream), so clear it and start over.
      await store.abortIncompleteUploads(key);

      const startedAt = new Date().toISOString();
      const { client, snapshot } = await postgres.openSnapshot(url);
      const progress = { step: 'dump', bytesIn: 0, bytesOut: 0 };
      const stopHeartbeats = startHeartbeats(progress);
      try {
        const serverVersion = (await client.query<{ v: string }>(`SELECT current_setting('server_version') AS v`)).rows[0]!.v;
        // pg_dump → pv (counts) → zstd run as one OS pipeline; Node only sees
        // the compressed stream: hash, count, rate cap, S3. The upload
        // completes only if every stage exited cleanly.
        const dump = postgres.startDump(url, { snapshot, extraArgs: systems.postgresDumpArgs(system), signal });
        const counter = startByteCounter(dump.stdout, (total) => (progress.bytesIn = total), signal);
        const zstd = startTool('zstd', [`-${systems.compressionLevel(system)}`, '-T0', '-q', '-c'], { stdio: [counter.stdout, 'pipe', 'pipe'], signal });
        const rowCounts = postgres.rowCounts(client);
        rowCounts.catch(() => undefined); // awaited below; if the upload fails first, not at all

        const hash = createHash('sha256');
        const compressed = tap(zstd.child.stdout as AsyncIterable<Buffer>, (chunk) => {
          hash.update(chunk);
          progress.bytesOut += chunk.length;
        });
        async function* body() {
          yield* throttle(compressed, systems.transferLimit(system));
          await Promise.all([dump.done, counter.done, zstd.done]);
        }
        const uploaded = await store.uploadStream(key, body(), { signal });
        const counts = await rowCounts;
        return {
          kind: 'postgres',
          key,
          database: databaseOf(url),
          serverVersion,
          format: 'pg_dump-custom',
          compression: 'zstd',
          rawBytes: progress.bytesIn,
          storedBytes: uploaded.sizeBytes,
          sha256: hash.digest('hex'),
          rowCounts: counts,
          startedAt,
          completedAt: new Date().toISOString(),
        };
      } finally {
        stopHeartbeats();
        await client.end().catch(() => undefined);
      }
    },

    /**
     * Loads a backup into `database` (a scratch database, dropped and made
     * anew so a retry starts clean): S3 → SHA-256 → zstd -d → pg_restore.
     * A checksum mismatch drops the scratch database and fails for good.
     */
    async restorePostgres(input: { system: string; component: PostgresComponent; database: string }) {
      const { system, component, database } = input;
      const signal = Context.current().cancellationSignal;
      const url = systems.postgresUrl(system);
      const store = systems.store(system);

      await postgres.dropDatabase(url, database);
      await postgres.createDatabase(url, database);

      const progress = { step: 'restore', bytesIn: 0, bytesOut: 0, totalBytes: component.storedBytes };
      const stopHeartbeats = startHeartbeats(progress);
      try {
        const { body } = await store.getStream(component.key, signal);
        const hash = createHash('sha256');
        const zstd = startTool('zstd', ['-d', '-q', '-c'], { signal });
        const restore = postgres.startRestore(withDatabase(url, database), zstd.child.stdout as Readable, { signal });
        const download = throttle(body as AsyncIterable<Buffer>, systems.transferLimit(system));
        const feeding = feed(download, zstd.child.stdin!, (chunk) => {
          hash.update(chunk);
          progress.bytesIn += chunk.length;
        });
        feeding.catch(() => zstd.child.kill('SIGKILL'));
        const [downloaded, ...tools] = await Promise.allSettled([feeding, zstd.done, restore.done]);

        // A fully read object that does not match the manifest is corrupt,
        // whatever zstd or pg_restore made of it: say so, and never retry.
        const sha256 = hash.digest('hex');
        if (downloaded.status === 'fulfilled' && (sha256 !== component.sha256 || progress.bytesIn !== component.storedBytes)) {
          await postgres.dropDatabase(url, database);
          throw new IntegrityError(
            `backup object ${component.key} is corrupt: sha256 ${sha256.slice(0, 12)}… (${progress.bytesIn} bytes), manifest says ${component.sha256.slice(0, 12)}… (${component.storedBytes} bytes)`,
          );
        }
        for (const r of [downloaded, ...tools]) if (r.status === 'rejected') throw r.reason;
        return { database, storedBytes: progress.bytesIn };
      } finally {
        stopHeartbeats();
      }
    },

    async postgresRowCounts(input: { system: string; database: string }) {
      return postgres.rowCountsOf(withDatabase(systems.postgresUrl(input.system), input.database));
    },

    /** Which of these databases exist on the system's server. */
    async databasesExist(input: { system: string; names: string[] }): Promise<Record<string, boolean>> {
      const url = systems.postgresUrl(input.system);
      const result: Record<string, boolean> = {};
      for (const name of input.names) result[name] = await postgres.databaseExists(url, name);
      return result;
    },

    /** Idempotent rename; `closeFrom` first stops new connections to `from`. */
    async renameDatabase(input: { system: string; from: string; to: string; closeFrom?: boolean }) {
      await postgres.renameDatabase(systems.postgresUrl(input.system), input.from, input.to, { closeFrom: input.closeFrom });
    },

    async allowConnections(input: { system: string; database: string; allow: boolean }) {
      await postgres.setAllowConnections(systems.postgresUrl(input.system), input.database, input.allow);
    },

    async dropDatabase(input: { system: string; database: string }) {
      return postgres.dropDatabase(systems.postgresUrl(input.system), input.database);
    },
  };
}
