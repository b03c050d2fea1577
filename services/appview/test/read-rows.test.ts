/**
 * How a read worker gets rows and answer bytes: listSql's statements run on the better-sqlite3 handle
 * return their rows as one JSON text (src/hydration/sql.ts, readStatement), and answers are encoded by
 * jsonBytes (src/api/read-pool.ts). The oracles are better-sqlite3's own rows (object mode, the statement
 * as written) and TextEncoder.encode(JSON.stringify(value)).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { migrateToLatest, openSqlite, type Database } from '@stratos/core/db'
import { appviewMigrations } from '../src/indexer/migrations.js'
import { listSql, readDirectly, type ListSql } from '../src/hydration/sql.js'
import { hydrationQueries } from '../src/hydration/hydrator.js'
import { jsonBytes } from '../src/api/read-pool.js'

/** a deterministic generator (xorshift) */
function rng(seed: number) {
  let x = seed
  return () => {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    return (x >>> 0) / 2 ** 32
  }
}

const PIECES = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\u0000', '\u0001', '\u001f', 'é', '€', '𝄞', '🎉', '\u2028', '<', "'", '{', ']', 'null']

function text(r: () => number, max: number): string {
  let s = ''
  const n = Math.floor(r() * max)
  for (let i = 0; i < n; i++) s += PIECES[Math.floor(r() * PIECES.length)]
  return s
}

describe('read rows as one JSON text', () => {
  let dir: string
  let writer: Database<any>
  let reader: Database<any>
  let q: ListSql
  const prepared: string[] = []
  const dids: string[] = []
  const posts: string[] = []

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'read-rows-'))
    const file = join(dir, 'db.sqlite')
    writer = openSqlite<any>(file)
    await migrateToLatest(writer.db, appviewMigrations('sqlite'))
    const w = writer.sqlite!
    const r = rng(7)
    const T = '2026-01-01T00:00:00.000Z'
    for (let i = 0; i < 60; i++) {
      const did = `did:plc:${String(i).padStart(24, 'x')}`
      dids.push(did)
      w.prepare('INSERT INTO actor (did, handle, "indexedAt", "upstreamStatus") VALUES (?, ?, ?, ?)').run(did, r() < 0.2 ? null : `${text(r, 12)}.test`, T, r() < 0.1 ? 'takendown' : null)
      if (r() < 0.7) {
        const uri = `at://${did}/app.bsky.actor.profile/self`
        const record = JSON.stringify({ displayName: text(r, 20), description: text(r, 60) })
        w.prepare('INSERT INTO record (uri, cid, did, collection, rkey, json, "indexedAt") VALUES (?, ?, ?, ?, ?, ?, ?)').run(uri, `cid${i}`, did, 'app.bsky.actor.profile', 'self', record, T)
        w.prepare('INSERT INTO profile (uri, cid, creator, "displayName", description, "indexedAt") VALUES (?, ?, ?, ?, ?, ?)').run(uri, `cid${i}`, did, r() < 0.3 ? null : text(r, 20), text(r, 40), T)
      }
      for (let k = 0; k < 3; k++) {
        const uri = `at://${did}/app.bsky.feed.post/${i}p${k}${text(r, 3).replace(/\W/g, '')}`
        posts.push(uri)
        const record = JSON.stringify({ $type: 'app.bsky.feed.post', text: text(r, 80), createdAt: T })
        w.prepare('INSERT INTO record (uri, cid, did, collection, rkey, json, "indexedAt") VALUES (?, ?, ?, ?, ?, ?, ?)').run(uri, `c${i}-${k}`, did, 'app.bsky.feed.post', `${i}p${k}`, record, T)
        w.prepare('INSERT INTO post (uri, cid, creator, text, "createdAt", "indexedAt", "sortAt", "violatesThreadGate") VALUES (?, ?, ?, ?, ?, ?, ?, ?)').run(
          uri,
          `c${i}-${k}`,
          did,
          text(r, 80),
          T,
          T,
          T,
          r() < 0.1 ? 1 : 0,
        )
        if (r() < 0.8) {
          w.prepare('INSERT INTO record_agg (uri, "likeCount", "repostCount", "replyCount", "quoteCount") VALUES (?, ?, ?, ?, ?)').run(
            uri,
            Math.floor(r() * 1000),
            2 ** 40 + i,
            -k,
            0,
          )
        }
      }
    }
    for (let i = 0; i < 40; i++) {
      const a = dids[i]!
      const b = dids[(i * 7 + 3) % dids.length]!
      if (a !== b) w.prepare('INSERT INTO follow (uri, cid, creator, "subjectDid", "createdAt", "indexedAt", "sortAt") VALUES (?, ?, ?, ?, ?, ?, ?)').run(`at://${a}/app.bsky.graph.follow/${i}`, `f${i}`, a, b, T, T, T)
    }
    reader = openSqlite<any>(file, { readonly: true })
    const sqlite = reader.sqlite!
    readDirectly(reader.db, {
      inTransaction: false,
      prepare: (source) => {
        prepared.push(source)
        return sqlite.prepare(source)
      },
    })
    q = listSql(reader.db)
  })

  afterAll(async () => {
    await reader.close()
    await writer.close()
    rmSync(dir, { recursive: true, force: true })
  })

  /** the statement's rows as better-sqlite3 gives them in object mode, as sorted JSON texts */
  const oracle = (sql: string, params: unknown[]) =>
    (writer.sqlite!.prepare(sql).all(params.map((p) => (p !== null && typeof p === 'object' ? JSON.stringify((p as { list: string[] }).list) : p))) as unknown[])
      .map((row) => JSON.stringify(row))
      .sort()

  it('gives the rows better-sqlite3 gives, for the hydration statements', async () => {
    const sql = hydrationQueries(q)
    const viewer = dids[0]!
    const cases: [keyof typeof sql, unknown[]][] = [
      ['actors', [{ list: dids }]],
      ['actorCounts', ['app.bsky.labeler.service', { list: dids }]],
      ['postHeads', [{ list: posts }]],
      ['aggs', [{ list: posts }]],
      ['posts', [{ list: posts }]],
      ['viewerKinds', Array.from({ length: 8 }, () => viewer)],
    ]
    for (const [name, args] of cases) {
      const rows = await q.rows<unknown>(sql[name], args as never)
      expect(rows.length, name).toBeGreaterThan(0)
      expect(rows.map((row) => JSON.stringify(row)).sort(), name).toEqual(oracle(sql[name].sql, args))
    }
    // (the rows came from the statements wrapped to return one JSON text)
    expect(prepared.filter((s) => s.startsWith('SELECT json_group_array(json_array(')).length).toBe(cases.length)
  })

  it('keeps an ordered statement as it is (its rows in order)', async () => {
    const text = q.prepare('SELECT did, handle FROM actor WHERE did IN ?L ORDER BY did DESC')
    const rows = await q.rows<{ did: string }>(text, [{ list: dids }])
    expect(rows.map((r) => r.did)).toEqual([...dids].sort().reverse())
    expect(prepared.filter((s) => s.includes('ORDER BY did DESC') && s.startsWith('SELECT json_group_array'))).toEqual([])
  })

  it('reads a blob column as its bytes and a real exactly (a BLOB column keeps the statement out of JSON)', async () => {
    // json_array reads a blob as JSONB (x'00' would come back null): such a statement stays in raw mode
    const w = writer.sqlite!
    w.exec('CREATE TABLE IF NOT EXISTS read_rows_probe (k TEXT PRIMARY KEY, b BLOB, r REAL)')
    const values: [string, Buffer, number][] = [
      ['a', Buffer.from([0x00]), 1 / 3],
      ['b', Buffer.from([0x7b, 0x7d, 0xff]), 0.1 + 0.2],
      ['c', Buffer.alloc(0), 1e-300],
    ]
    for (const v of values) w.prepare('INSERT OR REPLACE INTO read_rows_probe (k, b, r) VALUES (?, ?, ?)').run(...v)
    const blobs = q.prepare('SELECT k, b FROM read_rows_probe WHERE k IN ?L')
    const rows = await q.rows<{ k: string; b: Uint8Array }>(blobs, [{ list: values.map((v) => v[0]) }])
    expect(rows.map((r) => [r.k, Buffer.from(r.b).toString('hex')]).sort()).toEqual(values.map((v) => [v[0], v[1].toString('hex')]).sort())
    expect(prepared.filter((s) => s.startsWith('SELECT json_group_array') && s.includes('read_rows_probe') && s.includes('"b"'))).toEqual([])
    // reals: SQLite's JSON text holds a double exactly (17 significant digits)
    const reals = q.prepare('SELECT k, r FROM read_rows_probe WHERE k IN ?L')
    const realRows = await q.rows<{ k: string; r: number }>(reals, [{ list: values.map((v) => v[0]) }])
    expect(Object.fromEntries(realRows.map((r) => [r.k, r.r]))).toEqual(Object.fromEntries(values.map((v) => [v[0], v[2]])))
    expect(prepared.filter((s) => s.startsWith('SELECT json_group_array') && s.includes('read_rows_probe') && s.includes('"r"')).length).toBe(1)
  })

  it('an empty result is an empty list', async () => {
    const rows = await q.rows(hydrationQueries(q).actors, [{ list: ['did:plc:none'] }])
    expect(rows).toEqual([])
  })
})

describe('jsonBytes', () => {
  const enc = new TextEncoder()
  const oracle = (v: unknown) => Buffer.from(enc.encode(JSON.stringify(v)))
  const same = (v: unknown) => {
    const got = Buffer.from(jsonBytes(v))
    const want = oracle(v)
    let i = 0
    while (i < got.length && got[i] === want[i]) i++
    // (where they differ, and a few bytes either side)
    expect(i === got.length && i === want.length ? null : { at: i, got: got.subarray(Math.max(0, i - 40), i + 40).toString(), want: want.subarray(Math.max(0, i - 40), i + 40).toString() }).toBe(null)
  }

  function str(r: () => number): string {
    let s = ''
    const n = Math.floor(r() * 40)
    for (let k = 0; k < n; k++) {
      const pick = r()
      s += pick < 0.7 ? String.fromCharCode(32 + Math.floor(r() * 95)) : pick < 0.9 ? String.fromCharCode(Math.floor(r() * 0x10000)) : PIECES[Math.floor(r() * PIECES.length)]
    }
    return s
  }
  /** a random JSON-ish value: long arrays and nested objects (split by jsonBytes), and what JSON.stringify leaves out or converts */
  function value(r: () => number, depth: number): unknown {
    const pick = r()
    if (depth > 5 || pick < 0.35) {
      const leaf = r()
      if (leaf < 0.3) return str(r)
      if (leaf < 0.45) return Math.floor(r() * 1e6) - 5e5
      if (leaf < 0.5) return [0.5, -0, NaN, Infinity, 1e21][Math.floor(r() * 5)]
      if (leaf < 0.6) return r() < 0.5
      if (leaf < 0.68) return null
      if (leaf < 0.76) return undefined
      if (leaf < 0.8) return () => 1
      if (leaf < 0.83) return Symbol('s')
      if (leaf < 0.88) return new Date(Math.floor(r() * 2e12))
      if (leaf < 0.91) {
        const replaced = str(r)
        return { toJSON: () => ({ replaced }) }
      }
      if (leaf < 0.94) return new Map([[1, 2]])
      if (leaf < 0.97) return new String(str(r))
      return Object.assign(Object.create(null), { bare: str(r) })
    }
    if (pick < 0.65) return Array.from({ length: Math.floor(r() * (depth < 3 && r() < 0.3 ? 20 : 4)) }, () => value(r, depth + 1))
    const o: Record<string, unknown> = {}
    const n = Math.floor(r() * 5)
    for (let k = 0; k < n; k++) o[r() < 0.2 ? String(Math.floor(r() * 10)) : str(r) || 'k'] = value(r, depth + 1)
    return o
  }

  it('gives the bytes of JSON.stringify as TextEncoder.encode gives them', () => {
    const r = rng(11)
    for (const v of [{}, [], '', 'é', '\ud800', 'x\udc00y', '🎉', 0, null, { a: undefined }, [undefined, () => 1], { a: [1, 2, 3, 4, 5, 6, 7, 8, 9] }]) same(v)
    for (let i = 0; i < 500; i++) same({ [str(r) || 'k']: value(r, 0), list: Array.from({ length: 8 + Math.floor(r() * 12) }, () => value(r, 1)) })
  })

  it('answers larger than its kept buffer, one after another', () => {
    const r = rng(5)
    // a 200-reply thread's shape, ~1 MB, then a small answer: the buffer grows, then is reused
    const reply = () => ({ $type: 'app.bsky.feed.defs#threadViewPost', post: { uri: `at://${str(r)}`, text: 'x'.repeat(4000) + str(r) + '€🎉' }, replies: [] })
    const big = { thread: { post: reply(), replies: Array.from({ length: 250 }, reply) } }
    same(big)
    same({ feed: [{ a: 1 }], cursor: 'c' })
    same(big)
    const long = { s: 'é'.repeat(9 << 20) }
    same(long)
    same({ after: 'the kept buffer was dropped' })
  })
})
