import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SqliteDatabase from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { decodeFrame, encodeMessageFrame, MemoryEventLog, SqliteEventLog } from '@stratos/core/stream'
import { range } from './helpers.js'

const frameFor = (seq: number, pad = 0) =>
  encodeMessageFrame('#identity', { seq, did: 'did:plc:abc', time: '2024-01-01T00:00:00.000Z', pad: 'x'.repeat(pad) })

describe('MemoryEventLog', () => {
  it('assigns seqs, reads after a seq, prunes a prefix', async () => {
    const log = new MemoryEventLog()
    expect(await log.latestSeq()).toBeNull()
    expect(await log.earliestSeq()).toBeNull()
    for (let i = 0; i < 10; i++) log.append((seq) => frameFor(seq), 1000 + i)
    expect(await log.latestSeq()).toBe(10)
    expect(await log.earliestSeq()).toBe(1)
    expect((await log.readAfter(3, 4)).map((e) => e.seq)).toEqual([4, 5, 6, 7])
    expect((await log.readAfter(10, 4)).length).toBe(0)
    expect(log.prune({ maxAgeMs: 5, now: 1009 })).toEqual({ deleted: 4, earliestSeq: 5 })
    expect(log.deleteThrough(6)).toBe(2)
    expect((await log.readAfter(0, 100)).map((e) => e.seq)).toEqual([7, 8, 9, 10])
    // seq keeps going after pruning everything
    log.deleteThrough(100)
    expect(log.append((seq) => frameFor(seq)).seq).toBe(11)
    expect(() => log.insert(11, frameFor(11))).toThrow(RangeError)
  })
})

describe('SqliteEventLog', () => {
  let dir: string
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'stratos-stream-'))
  })
  afterEach(() => rmSync(dir, { recursive: true, force: true }))

  it('stores frames durably: close, reopen, seq continues', async () => {
    const path = join(dir, 'events.sqlite')
    const log = new SqliteEventLog(path)
    const seen: number[] = []
    for (let i = 0; i < 5; i++) {
      const evt = log.append('identity', `did:plc:u${i}`, (seq) => {
        seen.push(seq)
        return frameFor(seq)
      })
      // the frame handed back is the one stored, built with its own seq
      const f = decodeFrame(evt.frame)
      expect(f.op === 1 && f.body.seq).toBe(evt.seq)
    }
    expect(seen).toEqual([1, 2, 3, 4, 5])
    log.close()

    const again = new SqliteEventLog(path)
    expect(await again.latestSeq()).toBe(5)
    expect(await again.earliestSeq()).toBe(1)
    const rows = await again.readAfter(2, 10)
    expect(rows.map((r) => r.seq)).toEqual([3, 4, 5])
    for (const r of rows) {
      const f = decodeFrame(r.frame)
      expect(f.op === 1 && f.body.seq).toBe(r.seq)
    }
    expect(again.readRowsAfter(4, 1)[0]).toMatchObject({ seq: 5, type: 'identity', did: 'did:plc:u4' })
    expect(again.append('account', 'did:plc:x', (seq) => frameFor(seq)).seq).toBe(6)
    const batch = again.appendMany([
      { type: 'identity', did: 'did:plc:a', frame: (seq) => frameFor(seq) },
      { type: 'identity', did: null, frame: (seq) => frameFor(seq) },
    ])
    expect(batch.map((b) => b.seq)).toEqual([7, 8])
    again.close()

    // a second process view of the same file sees the committed rows
    const raw = new SqliteDatabase(path, { readonly: true })
    expect(raw.prepare('SELECT COUNT(*) AS n FROM stream_event').get()).toEqual({ n: 8 })
    raw.close()
  })

  it('appendMany and appendAssigned write batches past the multi-row statement bound, in seq order', async () => {
    const log = new SqliteEventLog(join(dir, 'many.sqlite'))
    // 250 rows: statements of 100, 100 and 50 rows
    const many = log.appendMany(range(0, 249).map((i) => ({ type: 'identity', did: `did:plc:m${i}`, frame: (seq) => frameFor(seq), time: 1000 + i })))
    expect(many.map((e) => e.seq)).toEqual(range(1, 250))
    const assigned = range(0, 129).map((i) => ({ seq: 251 + i, type: 'account', did: i % 2 ? null : `did:plc:a${i}`, time: 5000 + i, frame: frameFor(251 + i, i) }))
    log.appendAssigned(assigned)
    expect(log.lastAssignedSeq()).toBe(380)
    const rows = log.readRowsAfter(0, 1000)
    expect(rows.map((r) => r.seq)).toEqual(range(1, 380))
    expect(rows[0]).toMatchObject({ type: 'identity', did: 'did:plc:m0', time: 1000 })
    expect(rows[251]).toMatchObject({ seq: 252, type: 'account', did: null, time: 5001 })
    for (const r of rows) {
      const f = decodeFrame(r.frame)
      expect(f.op === 1 && f.body.seq).toBe(r.seq)
    }
    expect(log.stats()).toEqual({ count: 380, bytes: rows.reduce((n, r) => n + r.frame.byteLength, 0) })
    log.close()
  })

  it('appendAssigned refuses seqs that do not follow the last one, and writes none of them', async () => {
    const log = new SqliteEventLog(join(dir, 'assigned.sqlite'))
    log.append('identity', null, (seq) => frameFor(seq))
    const ev = (seq: number) => ({ seq, type: 'identity', time: 1, frame: frameFor(seq) })
    expect(() => log.appendAssigned([ev(3)])).toThrow(RangeError) // a gap
    expect(() => log.appendAssigned([ev(1)])).toThrow(RangeError) // a seq reused
    expect(() => log.appendAssigned([ev(2), ev(3), ev(5)])).toThrow(RangeError) // a gap inside the batch
    expect(log.lastAssignedSeq()).toBe(1)
    expect((await log.readAfter(0, 10)).map((e) => e.seq)).toEqual([1])
    log.appendAssigned([ev(2), ev(3)])
    log.appendAssigned([])
    expect((await log.readAfter(0, 10)).map((e) => e.seq)).toEqual([1, 2, 3])
    log.close()
  })

  it('a failing frame factory stores nothing and burns no seq', async () => {
    const log = new SqliteEventLog(join(dir, 'e.sqlite'))
    log.append('identity', 'did:plc:a', (seq) => frameFor(seq))
    expect(() =>
      log.append('identity', 'did:plc:a', () => {
        throw new Error('boom')
      }),
    ).toThrow('boom')
    expect(log.append('identity', 'did:plc:a', (seq) => frameFor(seq)).seq).toBe(2)
    expect((await log.readAfter(0, 10)).map((e) => e.seq)).toEqual([1, 2])
    log.close()
  })

  it('prunes by age', async () => {
    const log = new SqliteEventLog(join(dir, 'age.sqlite'))
    const t0 = 1_700_000_000_000
    for (let i = 0; i < 10; i++) log.append('identity', null, (seq) => frameFor(seq), t0 + i * 60_000)
    // keep the last 3.5 minutes relative to the newest event
    const res = log.prune({ maxAgeMs: 210_000, now: t0 + 9 * 60_000 })
    expect(res).toEqual({ deleted: 6, earliestSeq: 7 })
    expect((await log.readAfter(0, 100)).map((e) => e.seq)).toEqual([7, 8, 9, 10])
    expect(log.prune({ maxAgeMs: 210_000, now: t0 + 9 * 60_000 }).deleted).toBe(0)
    log.close()
  })

  it('prunes by byte budget, newest kept, and seq never goes back after pruning everything', async () => {
    const path = join(dir, 'bytes.sqlite')
    const log = new SqliteEventLog(path)
    for (let i = 0; i < 20; i++) log.append('identity', null, (seq) => frameFor(seq, 1000))
    const size = (await log.readAfter(0, 1))[0]!.frame.byteLength
    expect(log.stats()).toEqual({ count: 20, bytes: 20 * size })
    const res = log.prune({ maxBytes: size * 5 + 10 })
    expect(res).toEqual({ deleted: 15, earliestSeq: 16 })
    expect(log.stats().bytes).toBeLessThanOrEqual(size * 5 + 10)
    expect((await log.readAfter(0, 100)).map((e) => e.seq)).toEqual(range(16, 20))

    expect(log.prune({ maxBytes: 0 }).deleted).toBe(5)
    expect(await log.latestSeq()).toBeNull()
    expect(log.lastAssignedSeq()).toBe(20)
    log.close()
    const again = new SqliteEventLog(path)
    expect(again.append('identity', null, (seq) => frameFor(seq)).seq).toBe(21)
    again.close()
  })

  it('keeps its totals with the log: stats() and a prune within the byte budget read no event row, and a rollback takes them back', async () => {
    const statements: string[] = []
    const db = new SqliteDatabase(join(dir, 'totals.sqlite'), { verbose: (sql) => statements.push(String(sql)) })
    const log = new SqliteEventLog(db, { table: 'ev' })
    for (let i = 0; i < 30; i++) log.append('identity', null, (seq) => frameFor(seq, 100 + i))
    const scan = () => db.prepare('SELECT COUNT(*) AS count, COALESCE(SUM(size), 0) AS bytes FROM ev').get()
    const all = scan()
    statements.length = 0
    expect(log.stats()).toEqual(all)
    expect(log.prune({ maxBytes: 10 ** 9 }).deleted).toBe(0)
    // of the events' table (the replay window: hours of the network), only its first seq was read (one seek)
    expect(statements.filter((s) => /\bev\b/.test(s))).toEqual(['SELECT MIN(seq) AS seq FROM ev'])

    // a transaction of the caller that appends and deletes, then rolls back: the totals come back with it
    expect(() =>
      db.transaction(() => {
        log.append('identity', null, (seq) => frameFor(seq, 5000))
        log.deleteThrough(10)
        throw new Error('rolled back')
      })(),
    ).toThrow('rolled back')
    expect(log.stats()).toEqual(all)
    // and a prune by bytes keeps the newest events within the budget, the totals still those of the rows
    const res = log.prune({ maxBytes: Math.floor(all.bytes / 2) })
    expect(res.deleted).toBeGreaterThan(0)
    expect(log.stats()).toEqual(scan())
    expect(log.stats().bytes).toBeLessThanOrEqual(Math.floor(all.bytes / 2))
    const next = (await log.readAfter(0, 1))[0]!
    expect(log.stats().bytes + next.frame.byteLength).toBeGreaterThan(Math.floor(all.bytes / 2)) // the shortest prefix went
    log.close()
    db.close()
  })

  it('counts a log written before the totals were kept once, when it opens it', async () => {
    const path = join(dir, 'old-meta.sqlite')
    const old = new SqliteDatabase(path)
    old.exec(`
      CREATE TABLE stream_event (seq INTEGER PRIMARY KEY, type TEXT NOT NULL, did TEXT, time INTEGER NOT NULL, size INTEGER NOT NULL, frame BLOB NOT NULL);
      CREATE TABLE stream_event_meta (id INTEGER PRIMARY KEY CHECK (id = 1), last_seq INTEGER NOT NULL);
      INSERT INTO stream_event_meta (id, last_seq) VALUES (1, 9);
    `)
    const insert = old.prepare('INSERT INTO stream_event (seq, type, did, time, size, frame) VALUES (?, ?, NULL, 1, ?, ?)')
    for (let seq = 4; seq <= 9; seq++) insert.run(seq, 'identity', frameFor(seq).byteLength, Buffer.from(frameFor(seq)))
    old.close()
    const log = new SqliteEventLog(path)
    const bytes = range(4, 9).reduce((n, seq) => n + frameFor(seq).byteLength, 0)
    expect(log.stats()).toEqual({ count: 6, bytes })
    expect(log.append('identity', null, (seq) => frameFor(seq)).seq).toBe(10)
    expect(log.stats()).toEqual({ count: 7, bytes: bytes + frameFor(10).byteLength })
    log.close()
    const again = new SqliteEventLog(path)
    expect(again.stats().count).toBe(7)
    again.close()
  })

  it('shares a caller-owned database under its own table name', async () => {
    const db = new SqliteDatabase(':memory:')
    const a = new SqliteEventLog(db, { table: 'repo_events' })
    const b = new SqliteEventLog(db, { table: 'label_events' })
    a.append('identity', null, (seq) => frameFor(seq))
    a.append('identity', null, (seq) => frameFor(seq))
    expect(b.append('identity', null, (seq) => frameFor(seq)).seq).toBe(1)
    expect(await a.latestSeq()).toBe(2)
    a.close() // does not close a database it did not open
    expect(db.open).toBe(true)
    expect(() => new SqliteEventLog(db, { table: 'x; DROP TABLE y' })).toThrow()
    db.close()
  })
})
