import { sql } from 'kysely'
import { describe, expect, it } from 'vitest'
import SqliteDatabase from 'better-sqlite3'
import { MultiRowStatement, migrateToLatest, openDatabase, openSqlite, type Migrations } from '@stratos/core/db'

interface Schema {
  item: { id: number; name: string }
}

const migrations: Migrations = {
  '001-init': {
    up: async (db) => {
      await db.schema.createTable('item').addColumn('id', 'integer', (c) => c.primaryKey()).addColumn('name', 'text', (c) => c.notNull()).execute()
    },
  },
  '002-index': {
    up: async (db) => {
      await db.schema.createIndex('item_name_idx').on('item').column('name').execute()
    },
  },
}

describe('db', () => {
  it('SQLite with a statement cache: statements reused (LRU), same results, transactions and schema changes still work', async () => {
    const { db, close } = openSqlite<Schema>(':memory:', { statementCache: 2 })
    await migrateToLatest(db, migrations)
    await db.transaction().execute(async (tx) => {
      for (let i = 0; i < 50; i++) await tx.insertInto('item').values({ id: i, name: `n${i % 5}` }).execute()
    })
    for (let i = 0; i < 3; i++) {
      expect((await db.selectFrom('item').select('id').where('name', '=', 'n3').orderBy('id').execute()).map((r) => r.id)).toEqual([3, 8, 13, 18, 23, 28, 33, 38, 43, 48])
      expect(Number((await db.selectFrom('item').select((eb) => eb.fn.countAll().as('n')).executeTakeFirst())?.n)).toBe(50)
      // a third statement text pushes the oldest out of the 2-entry cache
      expect(await db.selectFrom('item').select('name').where('id', '=', 7).executeTakeFirst()).toEqual({ name: 'n2' })
    }
    await expect(db.transaction().execute(async (tx) => {
      await tx.insertInto('item').values({ id: 100, name: 'x' }).execute()
      throw new Error('roll back')
    })).rejects.toThrow('roll back')
    expect(await db.selectFrom('item').select('id').where('id', '=', 100).executeTakeFirst()).toBeUndefined()
    await db.schema.alterTable('item').addColumn('extra', 'text').execute()
    expect(await db.selectFrom('item').selectAll().where('id', '=', 1).executeTakeFirst()).toEqual({ id: 1, name: 'n1', extra: null })
    await close()
  })

  it('runs migrations once and stores rows in SQLite', async () => {
    const { db, close } = openSqlite<Schema>(':memory:')
    await migrateToLatest(db, migrations)
    await migrateToLatest(db, migrations) // idempotent
    await db.insertInto('item').values({ id: 1, name: 'a' }).execute()
    expect(await db.selectFrom('item').selectAll().execute()).toEqual([{ id: 1, name: 'a' }])
    await close()
  })

  it('reports the failing migration by name', async () => {
    const { db, close } = openSqlite<Schema>(':memory:')
    const bad: Migrations = { ...migrations, '003-bad': { up: async (d) => { await sql`NOT SQL`.execute(d) } } }
    await expect(migrateToLatest(db, bad)).rejects.toThrow(/003-bad/)
    await close()
  })

  const pgUrl = process.env.STRATOS_TEST_PG_URL
  it.runIf(pgUrl)('runs the same migrations on PostgreSQL in an isolated schema', async () => {
    const schema = `dbtest_${process.pid}_${Date.now()}`
    const { db, close } = await openDatabase<Schema>(pgUrl!, { schema })
    try {
      await migrateToLatest(db, migrations)
      await db.insertInto('item').values({ id: 7, name: 'pg' }).execute()
      expect(await db.selectFrom('item').selectAll().execute()).toEqual([{ id: 7, name: 'pg' }])
    } finally {
      await sql.raw(`DROP SCHEMA "${schema}" CASCADE`).execute(db)
      await close()
    }
  })
  if (!pgUrl) console.log('db.test: PostgreSQL tests SKIPPED (STRATOS_TEST_PG_URL not set)')
})

describe.runIf(process.env.STRATOS_TEST_PG_URL)('db on PostgreSQL: schema isolation', () => {
  it('creates tables only inside the requested schema, from the first query on', async () => {
    const url = process.env.STRATOS_TEST_PG_URL!
    const schema = `dbiso_${process.pid}_${Date.now()}`
    const { db, close } = await openDatabase<Schema>(url, { schema })
    try {
      await migrateToLatest(db, migrations)
      const rows = await sql<{ table_schema: string }>`SELECT table_schema FROM information_schema.tables WHERE table_name = 'item'`.execute(db)
      expect(rows.rows.map((r) => r.table_schema)).toEqual([schema])
    } finally {
      await sql.raw(`DROP SCHEMA "${schema}" CASCADE`).execute(db)
      await close()
    }
  })

  it('keeps each schema\'s migration bookkeeping apart while several schemas share the database', async () => {
    const url = process.env.STRATOS_TEST_PG_URL!
    const firstSchema = `dbmig_a_${process.pid}_${Date.now()}`
    const first = await openDatabase<Schema>(url, { schema: firstSchema })
    const secondSchema = `dbmig_b_${process.pid}_${Date.now()}`
    const second = await openDatabase<Schema>(url, { schema: secondSchema })
    try {
      await migrateToLatest(first.db, migrations)
      // the second schema migrates while the first one's kysely_migration tables exist
      await migrateToLatest(second.db, migrations)
      await second.db.insertInto('item').values({ id: 1, name: 'b' }).execute()
      const tables = await sql<{ table_schema: string }>`SELECT table_schema FROM information_schema.tables WHERE table_name = 'kysely_migration'`.execute(second.db)
      expect(tables.rows.map((r) => r.table_schema)).toContain(secondSchema)
    } finally {
      for (const [schema, database] of [[firstSchema, first], [secondSchema, second]] as const) {
        await sql.raw(`DROP SCHEMA "${schema}" CASCADE`).execute(database.db)
        await database.close()
      }
    }
  })
})

describe('MultiRowStatement', () => {
  it('writes any number of rows in statements of at most maxRows rows, with the same result as one statement per row', () => {
    const raw = new SqliteDatabase(':memory:')
    raw.exec('CREATE TABLE a (k INTEGER PRIMARY KEY, v TEXT, n INTEGER); CREATE TABLE b (k INTEGER PRIMARY KEY, v TEXT, n INTEGER)')
    const multi = new MultiRowStatement(raw, 'INSERT INTO a (k, v, n)', 3, 'ON CONFLICT (k) DO UPDATE SET n = n + excluded.n', 7)
    const one = raw.prepare('INSERT INTO b (k, v, n) VALUES (?, ?, ?) ON CONFLICT (k) DO UPDATE SET n = n + excluded.n')
    for (const count of [0, 1, 6, 7, 8, 20, 21, 22]) {
      const params = Array.from({ length: count }, (_, i) => [i % 15, `v${i}`, i]).flat()
      multi.run(params)
      for (let i = 0; i < count; i++) one.run(params.slice(i * 3, i * 3 + 3))
    }
    const a = raw.prepare('SELECT * FROM a ORDER BY k').all()
    expect(a.length).toBe(15)
    expect(a).toEqual(raw.prepare('SELECT * FROM b ORDER BY k').all())
    expect(() => multi.run([1, 'x'])).toThrow(RangeError) // not whole rows
    expect(() => new MultiRowStatement(raw, 'INSERT INTO a (k)', 1, '', 40_000)).toThrow(RangeError)
    raw.close()
  })
})
