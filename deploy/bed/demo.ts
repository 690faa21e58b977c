/**
 * The demo system `opsflow dev` looks after: a small shop database in the
 * bed's PostgreSQL, made once (kept across dev restarts).
 */
import pg from 'pg';

export async function ensureDemoDatabase(superuserUrl: string): Promise<boolean> {
  const admin = new pg.Client({ connectionString: superuserUrl });
  await admin.connect();
  try {
    const exists = await admin.query(`SELECT 1 FROM pg_database WHERE datname = 'demo'`);
    if (exists.rowCount) return false;
    await admin.query('CREATE DATABASE demo');
  } finally {
    await admin.end();
  }
  const url = new URL(superuserUrl);
  url.pathname = '/demo';
  const db = new pg.Client({ connectionString: url.toString() });
  await db.connect();
  try {
    await db.query(`
      CREATE SCHEMA shop;
      CREATE TABLE shop.customers (id serial PRIMARY KEY, name text NOT NULL, email text UNIQUE, joined date NOT NULL);
      CREATE TABLE shop.orders (id bigserial PRIMARY KEY, customer_id int REFERENCES shop.customers(id), total numeric(10,2), placed_at timestamptz, note text);
      CREATE INDEX orders_customer_idx ON shop.orders(customer_id);
      INSERT INTO shop.customers (name, email, joined)
        SELECT (ARRAY['Zoë','Łukasz','Amaru','Søren','Aiko','Nia'])[1 + g % 6] || ' #' || g, 'c' || g || '@demo.example', DATE '2024-01-01' + g % 700
        FROM generate_series(1, 5000) g;
      INSERT INTO shop.orders (customer_id, total, placed_at, note)
        SELECT 1 + g % 5000, round((random() * 500)::numeric, 2), TIMESTAMPTZ '2025-01-01' + g * interval '37 seconds', md5(g::text)
        FROM generate_series(1, 200000) g;
    `);
  } finally {
    await db.end();
  }
  return true;
}
