/**
 * Benchmark data: a database of roughly `targetBytes` (pg_database_size)
 * shaped like an application's — customers, orders and an event log, with
 * ids, timestamps, uuids, md5 tokens, names and words from small vocabularies,
 * JSON documents, numerics, and b-tree indexes. It compresses roughly like
 * real data (gzip about 3–5x on the plain dump), not like pgbench's blank
 * filler (~100x).
 *
 * Loaded with INSERT … SELECT generate_series in batches on two connections
 * (events on one, customers and orders on the other), checking the size
 * after each batch, then VACUUM (FREEZE, ANALYZE) so hint bits are set and
 * the first dump that reads the data does not pay for writing them.
 */
import pg from 'pg';

const words = (list: string | string[]) =>
  `ARRAY[${(typeof list === 'string' ? list.split(/\s*,\s*/) : list).map((w) => `'${w.replace(/'/g, "''")}'`).join(',')}]`;
/** One random element of an SQL array literal (volatile: evaluated per row). */
const pick = (array: string, n: number) => `(${array})[1 + floor(random() * ${n})::int]`;

const FIRST = words('Emma, Liam, Olivia, Noah, Ava, Elijah, Sophia, Lucas, Mia, Mateo, Amelia, Levi, Harper, Ezra, Evelyn, James, Aria, Leo, Chloé, Jörg, Łukasz, Zoë, Hiroshi, Priya, Ahmed, Fatima, Ivan, Sofía, Chen, Nia');
const LAST = words('Smith, Johnson, Williams, Brown, Jones, Garcia, Miller, Davis, Rodriguez, Martinez, Hernandez, Lopez, Gonzalez, Wilson, Anderson, Thomas, Taylor, Moore, Jackson, Martin, Lee, Müller, Nowak, Tanaka, Kumar, Haddad, Petrov, Rossi, Dubois, Okafor');
const DOMAINS = words('gmail.com, yahoo.com, outlook.com, hotmail.com, icloud.com, proton.me, example.org, acme.io, contoso.com, fastmail.com');
const COUNTRIES = words('US, US, US, GB, DE, FR, CA, JP, IN, BR, NL, PL, ES, IT, SE, AU');
const CITIES = words('Springfield, Riverside, Franklin, Greenville, Bristol, Clinton, Fairview, Salem, Madison, Georgetown, Arlington, Ashland, Dover, Oxford, Jackson, Burlington, Manchester, Milton, Newport, Auburn');
const STREETS = words('Main, Oak, Pine, Maple, Cedar, Elm, Washington, Lake, Hill, Park, View, Sunset, Lincoln, Church, River, Highland, Forest, Meadow, Spring, Willow');
const PLANS = words('free, free, free, starter, starter, pro, pro, business, enterprise');
const STATUSES = words('delivered, delivered, delivered, delivered, shipped, shipped, paid, pending, cancelled, refunded');
const CURRENCIES = words('USD, USD, USD, EUR, EUR, GBP, JPY');
const PRODUCTS = words('widget, gadget, sprocket, adapter, cable, charger, headphones, keyboard, mouse, monitor, stand, lamp, backpack, bottle, notebook, pen, mug, t-shirt, hoodie, sticker');
const ADJECTIVES = words('blue, red, large, small, wireless, premium, classic, eco, compact, deluxe, refurbished, vintage');
const NOTE_WORDS = words('please, leave, at, the, front, door, call, on, arrival, gift, wrap, fragile, back, entrance, ring, bell, neighbour, accepts, parcels, thanks, no, plastic, bag, urgent, weekend, delivery');
const KINDS = words('page_view, page_view, page_view, page_view, page_view, click, click, click, search, add_to_cart, remove_from_cart, checkout_started, checkout_completed, login, logout, signup, api_call, api_call');
const SECTIONS = words('products, products, products, category, search, cart, checkout, account, help, blog, orders, settings');
const REFERRERS = words('https://www.google.com/, https://www.google.com/, https://www.bing.com/, https://duckduckgo.com/, https://t.co/, https://www.facebook.com/, https://news.ycombinator.com/, direct, direct, direct');
const UTM = words('newsletter, google_ads, facebook, twitter, organic, organic, organic, partner');
const AGENTS = words([
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36',
  'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15',
  'Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1',
  'Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0',
  'Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36',
  'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.0.0',
  'okhttp/4.12.0',
  'python-requests/2.31.0',
]);

const SCHEMA = `
  CREATE TABLE customers (
    id bigint PRIMARY KEY,
    email text NOT NULL,
    full_name text NOT NULL,
    country text NOT NULL,
    city text,
    plan text NOT NULL,
    api_key text NOT NULL,
    marketing_opt_in boolean NOT NULL,
    created_at timestamptz NOT NULL
  );
  CREATE TABLE orders (
    id bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status text NOT NULL,
    currency text NOT NULL,
    total numeric(12,2) NOT NULL,
    item_count int NOT NULL,
    items jsonb NOT NULL,
    shipping_address text NOT NULL,
    note text,
    payment_ref text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
  );
  CREATE INDEX orders_customer_idx ON orders (customer_id, created_at);
  CREATE TABLE events (
    id bigint PRIMARY KEY,
    occurred_at timestamptz NOT NULL,
    customer_id bigint,
    kind text NOT NULL,
    session_id uuid NOT NULL,
    request_id text NOT NULL,
    trace_id text NOT NULL,
    client_ip inet,
    user_agent text NOT NULL,
    status_code smallint NOT NULL,
    latency_us int NOT NULL,
    response_bytes int NOT NULL,
    properties jsonb NOT NULL
  );
  CREATE INDEX events_occurred_idx ON events (occurred_at);
`;

/** Customers and orders per event row: events ~55%, orders ~35%, customers ~10% of the data. */
const CUSTOMERS_PER_EVENT = 1 / 25;
const ORDERS_PER_EVENT = 1 / 3;

function customersSql(from: number, to: number): string {
  return `
    INSERT INTO customers
    SELECT g,
           lower(f) || '.' || lower(l) || (g % 1000) || '@' || ${pick(DOMAINS, 10)},
           f || ' ' || l,
           ${pick(COUNTRIES, 16)},
           ${pick(CITIES, 20)},
           ${pick(PLANS, 9)},
           md5(random()::text),
           random() < 0.4,
           timestamptz '2019-01-01 00:00:00+00' + g * interval '37 seconds' + random() * interval '30 seconds'
      FROM (SELECT g, ${pick(FIRST, 30)} AS f, ${pick(LAST, 30)} AS l FROM generate_series(${from}, ${to}) g OFFSET 0) s`;
}

function ordersSql(from: number, to: number, customers: number): string {
  return `
    INSERT INTO orders
    SELECT g, c, st, cur, round((q1 * p1 + q2 * p2)::numeric, 2), q1 + q2,
           jsonb_build_array(
             jsonb_build_object('sku', 'SKU-' || lpad((1 + floor(random() * 20000))::int::text, 6, '0'), 'name', ${pick(ADJECTIVES, 12)} || ' ' || ${pick(PRODUCTS, 20)}, 'qty', q1, 'unit_price', round(p1::numeric, 2)),
             jsonb_build_object('sku', 'SKU-' || lpad((1 + floor(random() * 20000))::int::text, 6, '0'), 'name', ${pick(ADJECTIVES, 12)} || ' ' || ${pick(PRODUCTS, 20)}, 'qty', q2, 'unit_price', round(p2::numeric, 2))),
           (1 + floor(random() * 9999))::int || ' ' || ${pick(STREETS, 20)} || ' St, ' || ${pick(CITIES, 20)} || ' ' || lpad(floor(random() * 100000)::int::text, 5, '0') || ', ' || ${pick(COUNTRIES, 16)},
           CASE WHEN random() < 0.25 THEN ${pick(NOTE_WORDS, 26)} || ' ' || ${pick(NOTE_WORDS, 26)} || ' ' || ${pick(NOTE_WORDS, 26)} || ' ' || ${pick(NOTE_WORDS, 26)} END,
           'pi_' || substr(md5(random()::text), 1, 24),
           at, at + random() * interval '6 days'
      FROM (SELECT g, 1 + floor(random() * ${customers})::bigint AS c, ${pick(STATUSES, 10)} AS st, ${pick(CURRENCIES, 7)} AS cur,
                   1 + floor(random() * 3)::int AS q1, floor(random() * 3)::int AS q2, 2 + random() * 120 AS p1, 2 + random() * 60 AS p2,
                   timestamptz '2021-01-01 00:00:00+00' + g * interval '5 seconds' + random() * interval '5 seconds' AS at
              FROM generate_series(${from}, ${to}) g OFFSET 0) s`;
}

function eventsSql(from: number, to: number, customers: number): string {
  return `
    INSERT INTO events
    SELECT g,
           timestamptz '2024-01-01 00:00:00+00' + g * interval '150 milliseconds' + random() * interval '150 milliseconds',
           CASE WHEN random() < 0.8 THEN 1 + floor(random() * ${customers})::bigint END,
           ${pick(KINDS, 18)},
           md5('session' || (g / 12))::uuid,
           gen_random_uuid()::text,
           md5(random()::text),
           ('10.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int || '.' || floor(random() * 256)::int)::inet,
           ${pick(AGENTS, 8)},
           ${pick('ARRAY[200,200,200,200,200,200,200,304,301,404,500]', 11)},
           floor(random() * random() * 2000000)::int,
           floor(random() * 250000)::int,
           jsonb_build_object(
             'path', '/' || ${pick(SECTIONS, 12)} || '/' || floor(random() * 5000)::int,
             'referrer', ${pick(REFERRERS, 10)},
             'duration_ms', floor(random() * random() * 4000)::int,
             'product_id', floor(random() * 100000)::int,
             'utm_source', ${pick(UTM, 8)},
             'ab_bucket', CASE WHEN random() < 0.5 THEN 'control' ELSE 'variant_b' END,
             'viewport', jsonb_build_object('w', ${pick('ARRAY[1920,1440,1366,390,412,768]', 6)}, 'h', ${pick('ARRAY[1080,900,768,844,915,1024]', 6)}))
      FROM generate_series(${from}, ${to}) g`;
}

export interface LoadResult {
  databaseBytes: number;
  rows: { customers: number; orders: number; events: number };
  seconds: number;
}

/**
 * (Re)creates `db` through `adminUrl`'s server (a superuser URL of any
 * database there) and fills it until pg_database_size reaches `targetBytes`.
 */
export async function createBenchDatabase(
  adminUrl: string,
  db: string,
  targetBytes: number,
  log: (line: string) => void = () => undefined,
): Promise<LoadResult> {
  const started = Date.now();
  const urlOf = (name: string) => {
    const u = new URL(adminUrl);
    u.pathname = `/${name}`;
    return u.toString();
  };
  const admin = new pg.Client({ connectionString: urlOf('postgres') });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
    await admin.query(`CREATE DATABASE "${db}"`);
  } finally {
    await admin.end();
  }

  const a = new pg.Client({ connectionString: urlOf(db) });
  const b = new pg.Client({ connectionString: urlOf(db) });
  await Promise.all([a.connect(), b.connect()]);
  try {
    await a.query(SCHEMA);
    const size = async () => Number((await a.query<{ s: string }>('SELECT pg_database_size(current_database())::text AS s')).rows[0]!.s);
    const empty = await size();
    let current = empty;
    let events = 0;
    let orders = 0;
    let customers = 0;
    let bytesPerEvent = 700; // first guess; measured after each batch
    while (current < targetBytes) {
      const wanted = Math.ceil((targetBytes - current) / bytesPerEvent);
      // Small first batch to calibrate; later batches are bounded so the last one does not overshoot much.
      const n = Math.max(2_000, Math.min(events === 0 ? Math.ceil(wanted / 4) : wanted, 600_000));
      const nCustomers = Math.max(10, Math.round((events + n) * CUSTOMERS_PER_EVENT)) - customers;
      const nOrders = Math.round((events + n) * ORDERS_PER_EVENT) - orders;
      const totalCustomers = customers + nCustomers;
      await Promise.all([
        a.query(eventsSql(events + 1, events + n, totalCustomers)),
        (async () => {
          if (nCustomers > 0) await b.query(customersSql(customers + 1, totalCustomers));
          if (nOrders > 0) await b.query(ordersSql(orders + 1, orders + nOrders, totalCustomers));
        })(),
      ]);
      events += n;
      customers = totalCustomers;
      orders += Math.max(0, nOrders);
      current = await size();
      bytesPerEvent = Math.max(100, (current - empty) / events);
      log(`  loaded ${events} events, ${orders} orders, ${customers} customers: ${(current / 2 ** 20).toFixed(0)} MiB of ${(targetBytes / 2 ** 20).toFixed(0)} MiB`);
    }
    await a.query('VACUUM (FREEZE, ANALYZE)');
    await a.query('CHECKPOINT');
    return { databaseBytes: await size(), rows: { customers, orders, events }, seconds: (Date.now() - started) / 1000 };
  } finally {
    await Promise.all([a.end(), b.end()]);
  }
}

export async function dropBenchDatabase(adminUrl: string, db: string): Promise<void> {
  const u = new URL(adminUrl);
  u.pathname = '/postgres';
  const admin = new pg.Client({ connectionString: u.toString() });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS "${db}" WITH (FORCE)`);
  } finally {
    await admin.end();
  }
}
