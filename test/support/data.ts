/**
 * Sample data and exact comparisons for PostgreSQL tests: a database with
 * several schemas, sequences, indexes, unicode and binary data; per-table
 * ordered checksums; the schema as pg_dump prints it.
 */
import { execFileSync } from 'node:child_process';
import pg from 'pg';
import { withDatabase } from '../../src/adapters/postgres.ts';
import { bedEnv, pgUrl, PG_BIN } from './bed.ts';

/** The helpers below, on the PostgreSQL server whose superuser URL `serverUrl` gives (read at each call). */
export function postgresOn(serverUrl: () => string) {
  const urlOf = (db: string) => withDatabase(serverUrl(), db);
  async function sql<T extends pg.QueryResultRow = pg.QueryResultRow>(db: string, text: string, params: unknown[] = []): Promise<T[]> {
    const client = new pg.Client({ connectionString: urlOf(db) });
    await client.connect();
    try {
      return (await client.query<T>(text, params)).rows;
    } finally {
      await client.end();
    }
  }

  async function dropDatabase(db: string): Promise<void> {
    await sql('postgres', `DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  }

  async function databaseExists(db: string): Promise<boolean> {
    return (await sql('postgres', 'SELECT 1 FROM pg_database WHERE datname = $1', [db])).length === 1;
  }

  /** A database with the shapes a real application has; `rows` sets the size of the big table. */
  async function createSampleDatabase(db: string, rows = 20_000): Promise<void> {
    await dropDatabase(db);
    await sql('postgres', `CREATE DATABASE "${db}"`);
    await sql(db, `
      CREATE SCHEMA app;
      CREATE SCHEMA audit;
      CREATE TABLE app.users (
        id bigserial PRIMARY KEY,
        name text NOT NULL,
        email text UNIQUE,
        created_at timestamptz NOT NULL DEFAULT '2026-01-01T00:00:00Z'
      );
      CREATE TABLE app.documents (
        id bigserial PRIMARY KEY,
        user_id bigint REFERENCES app.users(id),
        title text,
        body text,
        payload bytea,
        tags text[],
        meta jsonb,
        draft text,
        title_length int GENERATED ALWAYS AS (length(title)) STORED
      );
      CREATE INDEX documents_user_idx ON app.documents(user_id);
      CREATE INDEX documents_meta_idx ON app.documents USING gin (meta);
      CREATE SEQUENCE audit.event_seq START 1000 INCREMENT 7;
      CREATE TABLE audit.events (id bigint PRIMARY KEY DEFAULT nextval('audit.event_seq'), kind text, at timestamptz);
      CREATE VIEW app.user_docs AS SELECT u.name, count(d.*) AS docs FROM app.users u LEFT JOIN app.documents d ON d.user_id = u.id GROUP BY u.name;
      CREATE TABLE public.empty_table (x int);
      -- What a backup split by tables must get right: a name that needs quoting, a generated
      -- column, partitions, a large object, and a trigger that must not fire as rows are loaded.
      CREATE TABLE app."odd.name ""quoted""" (id serial PRIMARY KEY, label text, label_length int GENERATED ALWAYS AS (length(label)) STORED);
      CREATE FUNCTION app.shout() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.label := upper(NEW.label) || '!'; RETURN NEW; END $$;
      CREATE TRIGGER shout BEFORE INSERT ON app."odd.name ""quoted""" FOR EACH ROW EXECUTE FUNCTION app.shout();
      CREATE TABLE audit.daily (day date NOT NULL, hits int NOT NULL) PARTITION BY RANGE (day);
      CREATE TABLE audit.daily_2025 PARTITION OF audit.daily FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
      CREATE TABLE audit.daily_2026 PARTITION OF audit.daily FOR VALUES FROM ('2026-01-01') TO ('2027-01-01');
    `);
    await sql(db, `
      INSERT INTO app.users (name, email)
        SELECT 'user ' || g || ' ' || (ARRAY['Zoë','Łukasz','東京','Ålborg','🚀 rocket','naïve café'])[1 + g % 6], 'u' || g || '@example.org'
        FROM generate_series(1, ${Math.max(10, Math.floor(rows / 10))}) g;
      INSERT INTO app.documents (user_id, title, body, payload, tags, meta)
        SELECT 1 + g % ${Math.max(10, Math.floor(rows / 10))}, 'doc ' || g, repeat(md5(g::text), 1 + g % 8) || E'\\n\\t ünïcödé ✓',
               decode(md5(g::text) || md5((g * 7)::text), 'hex') || '\\x00ff00'::bytea,
               ARRAY['t' || g % 5, 'tag ✓'], jsonb_build_object('n', g, 'even', g % 2 = 0, 'name', 'Zoë ' || g)
        FROM generate_series(1, ${rows}) g;
      ALTER TABLE app.documents DROP COLUMN draft; -- a dropped column: a copy of the rows must leave it out
      INSERT INTO audit.events (kind, at) SELECT 'login', '2026-01-01T00:00:00Z'::timestamptz + g * interval '1 minute' FROM generate_series(1, 500) g;
      INSERT INTO app."odd.name ""quoted""" (label) SELECT 'label ' || g FROM generate_series(1, 20) g;
      INSERT INTO audit.daily SELECT date '2025-12-01' + g, g FROM generate_series(0, 60) g;
      SELECT lo_from_bytea(0, convert_to(repeat('large object ✓ ', 1000), 'UTF8'));
    `);
  }

  /** `schema.table` → md5 of every row in a stable order: equal data gives equal sums. */
  async function tableChecksums(db: string): Promise<Record<string, string>> {
    const tables = await sql<{ t: string }>(db, `
      SELECT format('%I.%I', n.nspname, c.relname) AS t FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
       WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1`);
    const sums: Record<string, string> = {};
    for (const { t } of tables) {
      const [row] = await sql<{ sum: string; n: string }>(db, `SELECT md5(coalesce(string_agg(x::text, E'\\n' ORDER BY x::text), '')) AS sum, count(*)::text AS n FROM ${t} x`);
      sums[t] = `${row!.n}:${row!.sum}`;
    }
    // Large objects and sequences' positions are data too.
    const objects = await sql<{ oid: string; sum: string }>(db, `SELECT oid::text, md5(lo_get(oid)) AS sum FROM pg_largeobject_metadata ORDER BY oid`);
    for (const { oid, sum } of objects) sums[`large object ${oid}`] = sum;
    const seqs = await sql<{ s: string; v: string }>(db, `SELECT format('%I.%I', schemaname, sequencename) AS s, coalesce(last_value, 0)::text AS v FROM pg_sequences ORDER BY 1`);
    for (const { s, v } of seqs) sums[`sequence ${s}`] = v;
    return sums;
  }

  return { url: urlOf, sql, dropDatabase, databaseExists, createSampleDatabase, tableChecksums };
}

export type PostgresHelpers = ReturnType<typeof postgresOn>;

/** On the bed's server. */
export const bedPostgres: PostgresHelpers = postgresOn(() => bedEnv('BED_PG_SUPERUSER_URL'));
export const { sql, dropDatabase, databaseExists, createSampleDatabase, tableChecksums } = bedPostgres;

/** The schema as `pg_dump --schema-only` prints it. */
export function schemaOf(db: string): string {
  return execFileSync(`${PG_BIN()}/pg_dump`, ['--schema-only', '--no-owner', pgUrl(db)]).toString()
    .split('\n')
    .filter((l) => !l.startsWith('-- Dumped') && !l.startsWith('\\restrict') && !l.startsWith('\\unrestrict'))
    .join('\n');
}
