/**
 * The only code that talks to PostgreSQL: SQL over `pg`, dump and restore via
 * the native pg_dump/pg_restore. Driver errors become opsflow errors here, so
 * activities and workflows see "unavailable" (retry) or "rejected" (stop).
 */
import pg from 'pg';
import type { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import {
  ConflictError,
  NotFoundError,
  PeerRejectedError,
  PeerUnavailableError,
  OpsflowError,
  IntegrityError,
} from '../errors.ts';
import { redact } from '../secrets.ts';
import { startTool, type Tool } from './process.ts';

export interface PostgresTools {
  /** Directory holding pg_dump and pg_restore (matching the server's major version). */
  binDir?: string;
}

const MAINTENANCE_DATABASE = 'postgres';

/** Connection codes worth retrying: the server is down, starting, or overloaded. */
const TRANSIENT_CODES = new Set(['ECONNREFUSED', 'ECONNRESET', 'ETIMEDOUT', 'EHOSTUNREACH', 'ENOTFOUND', 'EAI_AGAIN', '57P01', '57P02', '57P03', '53300', '08006', '08001']);

export function toPostgresError(err: unknown, what: string): Error {
  if (err instanceof OpsflowError) return err;
  const e = err as { code?: string; message?: string };
  const message = `${what}: ${redact(e.message ?? String(err))}${e.code ? ` (${e.code})` : ''}`;
  if (e.code === '3D000') return new NotFoundError(message);
  if (e.code && TRANSIENT_CODES.has(e.code)) return new PeerUnavailableError(message);
  // Any other SQLSTATE (auth, permissions, SQL errors) will not change on retry.
  if (e.code && /^[0-9A-Z]{5}$/.test(e.code)) return new PeerRejectedError(message);
  return new PeerUnavailableError(message);
}

export function databaseOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) throw new PeerRejectedError('the PostgreSQL URL names no database');
  return name;
}

/** The same server and credentials, another database. */
export function withDatabase(url: string, database: string): string {
  const u = new URL(url);
  u.pathname = `/${encodeURIComponent(database)}`;
  return u.toString();
}

/** libpq environment for a URL: how pg_dump/pg_restore get credentials without argv. */
export function libpqEnv(url: string): NodeJS.ProcessEnv {
  const u = new URL(url);
  const env: NodeJS.ProcessEnv = {
    PGHOST: decodeURIComponent(u.hostname.replace(/^\[|\]$/g, '')),
    PGPORT: u.port || '5432',
    PGDATABASE: databaseOf(url),
  };
  if (u.username) env.PGUSER = decodeURIComponent(u.username);
  if (u.password) env.PGPASSWORD = decodeURIComponent(u.password);
  const sslmode = u.searchParams.get('sslmode');
  if (sslmode) env.PGSSLMODE = sslmode;
  const host = u.searchParams.get('host'); // unix socket directory
  if (host) env.PGHOST = host;
  return env;
}

function quoteIdent(name: string): string {
  return `"${name.replace(/"/g, '""')}"`;
}

function quoteLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`;
}

/** pg_dump's sections: the schema before the rows, the rows, and what is built after them (indexes, constraints, triggers). */
export type DumpSection = 'pre-data' | 'data' | 'post-data';

export interface TableRef {
  schema: string;
  name: string;
}

/**
 * Rows of one table whose heap page is in [fromPage, toPage) (to its end
 * without `toPage`), as the text of `COPY … TO STDOUT` in `encoding`: how a
 * split backup shares one big table's rows among parts. `columns` are those
 * that hold data (generated and dropped ones left out), in order.
 */
export interface RowRange {
  table: TableRef;
  columns: string[];
  fromPage: number;
  toPage?: number;
  encoding: string;
}

/** The text forms pg_dump writes rows in and pg_restore reads them back with, for a COPY of our own. */
const COPY_SESSION = ['SET DateStyle = ISO', 'SET IntervalStyle = postgres', 'SET extra_float_digits = 3', 'SET xmloption = content', 'SET row_security = off'];

/** The table's name in SQL, and a pg_dump pattern matching exactly it: each name in double quotes, where pattern characters are literal. */
function qualified(table: TableRef): string {
  return `${quoteIdent(table.schema)}.${quoteIdent(table.name)}`;
}

/** psql running `commands` in one session, quietly (the rows alone on stdout), stopping at the first error. */
function psqlArgs(url: string, commands: string[]): string[] {
  return ['--no-psqlrc', '--quiet', '--no-password', '--set=ON_ERROR_STOP=1', `--dbname=${databaseOf(url)}`, ...commands.flatMap((c) => ['--command', c])];
}

export class PostgresAdapter {
  constructor(private readonly tools: PostgresTools = {}) {}

  private bin(tool: string): string {
    return this.tools.binDir ? `${this.tools.binDir}/${tool}` : tool;
  }

  async connect(url: string): Promise<pg.Client> {
    const u = new URL(url);
    const client = new pg.Client({
      connectionString: url,
      host: u.searchParams.get('host') ?? undefined,
      connectionTimeoutMillis: 5000,
      application_name: 'opsflow',
    });
    client.on('error', () => undefined); // surfaced through the failing query instead
    try {
      await client.connect();
    } catch (err) {
      throw toPostgresError(err, `cannot connect to PostgreSQL at ${u.hostname}:${u.port || 5432}`);
    }
    return client;
  }

  async withClient<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    const client = await this.connect(url);
    try {
      return await fn(client);
    } catch (err) {
      throw toPostgresError(err, 'PostgreSQL');
    } finally {
      await client.end().catch(() => undefined);
    }
  }

  async serverInfo(url: string): Promise<{ database: string; serverVersion: string; sizeBytes: number }> {
    return this.withClient(url, async (c) => {
      const r = await c.query<{ version: string; size: string }>(
        `SELECT current_setting('server_version') AS version, pg_database_size(current_database())::text AS size`,
      );
      const row = r.rows[0]!;
      return { database: databaseOf(url), serverVersion: row.version, sizeBytes: Number(row.size) };
    });
  }

  /** Exact row counts of every ordinary table but those in `skip` (`schema.name`), in the client's current transaction. */
  async rowCounts(client: pg.Client, skip: ReadonlySet<string> = new Set()): Promise<Record<string, number>> {
    const tables = await client.query<{ schema: string; name: string }>(
      `SELECT n.nspname AS schema, c.relname AS name
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        ORDER BY 1, 2`,
    );
    const counts: Record<string, number> = {};
    for (const t of tables.rows) {
      if (skip.has(`${t.schema}.${t.name}`)) continue;
      const r = await client.query<{ n: string }>(`SELECT count(*)::text AS n FROM ${quoteIdent(t.schema)}.${quoteIdent(t.name)}`);
      counts[`${t.schema}.${t.name}`] = Number(r.rows[0]!.n);
    }
    return counts;
  }

  async rowCountsOf(url: string, skip?: ReadonlySet<string>): Promise<Record<string, number>> {
    return this.withClient(url, (c) => this.rowCounts(c, skip));
  }

  /**
   * Opens a repeatable-read transaction and exports its snapshot, so pg_dump
   * and the row counts see exactly the same data. Keep the client open until
   * pg_dump has started; end it with `client.end()`.
   */
  async openSnapshot(url: string): Promise<{ client: pg.Client; snapshot: string }> {
    const client = await this.connect(url);
    try {
      await client.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
      const r = await client.query<{ id: string }>('SELECT pg_export_snapshot() AS id');
      return { client, snapshot: r.rows[0]!.id };
    } catch (err) {
      await client.end().catch(() => undefined);
      throw toPostgresError(err, 'cannot export a snapshot');
    }
  }

  /** Every ordinary table with its size on disk, largest first: how a split backup shares them out. */
  async tableSizes(client: pg.Client): Promise<(TableRef & { bytes: number })[]> {
    const r = await client.query<{ schema: string; name: string; bytes: string }>(
      `SELECT n.nspname AS schema, c.relname AS name, pg_table_size(c.oid)::text AS bytes
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', 'information_schema')
          AND n.nspname NOT LIKE 'pg_toast%' AND n.nspname NOT LIKE 'pg_temp%'
        ORDER BY 3::bigint DESC, 1, 2`,
    );
    return r.rows.map((t) => ({ schema: t.schema, name: t.name, bytes: Number(t.bytes) }));
  }

  /**
   * pg_dump in custom format, uncompressed (compression happens downstream).
   * `sections` limits it to pg_dump's sections, `tables` to these tables, and
   * `withoutRowsOf` leaves those tables' rows out: how a split backup dumps
   * its schema and its data parts.
   */
  startDump(
    url: string,
    options: { snapshot?: string; extraArgs?: string[]; sections?: DumpSection[]; tables?: TableRef[]; withoutRowsOf?: TableRef[]; signal?: AbortSignal },
  ): Tool & { stdout: Readable } {
    const args = ['--format=custom', '--compress=0', '--no-password'];
    if (options.snapshot) args.push(`--snapshot=${options.snapshot}`);
    for (const section of options.sections ?? []) args.push(`--section=${section}`);
    for (const table of options.tables ?? []) args.push(`--table=${qualified(table)}`);
    for (const table of options.withoutRowsOf ?? []) args.push(`--exclude-table-data=${qualified(table)}`);
    args.push(...(options.extraArgs ?? []));
    const tool = startTool(this.bin('pg_dump'), args, {
      env: libpqEnv(url),
      stdio: ['ignore', 'pipe', 'pipe'],
      signal: options.signal,
    });
    return { ...tool, stdout: tool.child.stdout! };
  }

  /**
   * How many heap pages `table` has and its columns that hold data, as
   * `RowRange` wants them; `tidRangeScans`: the server reads a range of pages
   * alone (PostgreSQL 14 on), where older ones scan the whole table for each.
   */
  async tableLayout(client: pg.Client, table: TableRef): Promise<{ pages: number; columns: string[]; encoding: string; tidRangeScans: boolean }> {
    const r = await client.query<{ pages: string; columns: string[]; encoding: string; tidRangeScans: boolean }>(
      `SELECT (pg_relation_size($1::regclass, 'main') / current_setting('block_size')::int)::text AS pages,
              current_setting('server_encoding') AS encoding,
              current_setting('server_version_num')::int >= 140000 AS "tidRangeScans",
              ARRAY(SELECT attname::text FROM pg_attribute
                     WHERE attrelid = $1::regclass AND attnum > 0 AND NOT attisdropped AND attgenerated = ''
                     ORDER BY attnum) AS columns`,
      [qualified(table)],
    );
    const row = r.rows[0]!;
    return { ...row, pages: Number(row.pages) };
  }

  /**
   * psql writing the rows of `range` to its stdout, in the exported
   * `snapshot` (so they are the same rows pg_dump sees). A TID range scan
   * reads only those pages (PostgreSQL 14 and later).
   */
  startCopyOut(url: string, range: RowRange, options: { snapshot: string; signal?: AbortSignal }): Tool & { stdout: Readable } {
    const where = [`ctid >= '(${range.fromPage},0)'::tid`, ...(range.toPage === undefined ? [] : [`ctid < '(${range.toPage},0)'::tid`])].join(' AND ');
    const select = `SELECT ${range.columns.map(quoteIdent).join(', ')} FROM ONLY ${qualified(range.table)} WHERE ${where}`;
    const tool = startTool(this.bin('psql'), psqlArgs(url, [
      'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY',
      `SET TRANSACTION SNAPSHOT ${quoteLiteral(options.snapshot)}`,
      `SET client_encoding = ${quoteLiteral(range.encoding)}`,
      ...COPY_SESSION,
      `COPY (${select}) TO STDOUT`,
      'COMMIT',
    ]), { env: libpqEnv(url), stdio: ['ignore', 'pipe', 'pipe'], signal: options.signal });
    return { ...tool, stdout: tool.child.stdout! };
  }

  /**
   * psql loading rows that `startCopyOut` wrote, read from `input` (another
   * process's stdout), into `url`'s database. `rows`: how many the server
   * says the COPY stored (psql's ROW_COUNT).
   */
  copyIn(url: string, range: RowRange, input: Readable, options: { signal?: AbortSignal }): { rows: Promise<number> } {
    const tool = startTool(this.bin('psql'), psqlArgs(url, [
      `SET client_encoding = ${quoteLiteral(range.encoding)}`,
      ...COPY_SESSION,
      `COPY ${qualified(range.table)} (${range.columns.map(quoteIdent).join(', ')}) FROM STDIN`,
      '\\echo copied :ROW_COUNT',
    ]), { env: libpqEnv(url), stdio: [input, 'pipe', 'pipe'], keepOutput: true, signal: options.signal, onFailure: (message) => new IntegrityError(message) });
    const rows = Promise.all([text(tool.output!), tool.done]).then(([out]) => {
      const copied = /^copied (\d+)$/m.exec(out);
      if (!copied) throw new IntegrityError(`psql did not say how many rows of ${qualified(range.table)} it stored: ${JSON.stringify(out.slice(0, 200))}`);
      return Number(copied[1]);
    });
    return { rows };
  }

  /**
   * pg_restore reading a custom-format archive from `input` into `url`'s
   * database. Stops at the first error, so a partial restore is never reported
   * as success. `input` is an archive on disk, or another process's stdout,
   * handed over as pg_restore's stdin so the archive never passes through Node.
   */
  startRestore(url: string, input: Readable | { file: string }, options: { section?: DumpSection; signal?: AbortSignal }): Tool {
    const args = ['--exit-on-error', '--no-password', `--dbname=${databaseOf(url)}`];
    if (options.section) args.push(`--section=${options.section}`);
    const fromFile = 'file' in input;
    if (fromFile) args.push(input.file);
    const tool = startTool(this.bin('pg_restore'), args, {
      env: libpqEnv(url),
      stdio: [fromFile ? 'ignore' : input, 'ignore', 'pipe'],
      signal: options.signal,
      onFailure: (message) => new IntegrityError(message),
    });
    return tool;
  }

  /**
   * Database-level changes run on the server's maintenance database, since a
   * database cannot be renamed or dropped from a session inside it.
   */
  private admin<T>(url: string, fn: (client: pg.Client) => Promise<T>): Promise<T> {
    return this.withClient(withDatabase(url, MAINTENANCE_DATABASE), fn);
  }

  async databaseExists(url: string, name: string): Promise<boolean> {
    return this.admin(url, async (c) => {
      const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      return r.rowCount === 1;
    });
  }

  /** Creates an empty database from template0 (a clean slate for pg_restore). */
  async createDatabase(url: string, name: string): Promise<void> {
    await this.admin(url, async (c) => {
      await c.query(`CREATE DATABASE ${quoteIdent(name)} TEMPLATE template0`);
    });
  }

  async dropDatabase(url: string, name: string): Promise<boolean> {
    return this.admin(url, async (c) => {
      const r = await c.query('SELECT 1 FROM pg_database WHERE datname = $1', [name]);
      if (r.rowCount === 0) return false;
      await c.query(`DROP DATABASE ${quoteIdent(name)} WITH (FORCE)`);
      return true;
    });
  }

  /**
   * Renames `from` to `to`, ending connections to `from` first. With
   * `closeFrom`, `from` is also closed to new connections beforehand, so
   * nobody reconnects between the two steps. Idempotent: if `from` is gone
   * and `to` exists, the rename already happened.
   */
  async renameDatabase(url: string, from: string, to: string, options: { closeFrom?: boolean } = {}): Promise<void> {
    await this.admin(url, async (c) => {
      const names = await c.query<{ datname: string }>('SELECT datname FROM pg_database WHERE datname = ANY($1)', [[from, to]]);
      const present = new Set(names.rows.map((r) => r.datname));
      if (!present.has(from) && present.has(to)) return;
      if (!present.has(from)) throw new NotFoundError(`database "${from}" does not exist`);
      if (present.has(to)) throw new ConflictError(`database "${to}" already exists`);
      if (options.closeFrom) await c.query(`ALTER DATABASE ${quoteIdent(from)} WITH ALLOW_CONNECTIONS false`);
      await c.query('SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()', [from]);
      await c.query(`ALTER DATABASE ${quoteIdent(from)} RENAME TO ${quoteIdent(to)}`);
    });
  }

  async setAllowConnections(url: string, name: string, allow: boolean): Promise<void> {
    await this.admin(url, async (c) => {
      await c.query(`ALTER DATABASE ${quoteIdent(name)} WITH ALLOW_CONNECTIONS ${allow ? 'true' : 'false'}`);
    });
  }
}
