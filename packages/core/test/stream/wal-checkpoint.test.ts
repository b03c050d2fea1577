import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import SqliteDatabase from 'better-sqlite3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { WalCheckpointSchedule, WalCheckpointer, walCheckpointSequence } from '../../src/stream/index.js'

let dir: string
let checkpointer: WalCheckpointer

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stratos-wal-ckpt-'))
  checkpointer = new WalCheckpointer({ name: 'test-ckpt' })
  await checkpointer.ready()
})
afterAll(async () => {
  await checkpointer.close()
  rmSync(dir, { recursive: true, force: true })
})

function openDb(name: string) {
  const db = new SqliteDatabase(join(dir, name))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  db.exec('CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v BLOB NOT NULL)')
  const insert = db.prepare<[Buffer]>('INSERT INTO t (v) VALUES (?)')
  return { db, write: () => insert.run(Buffer.alloc(2000, 7)) }
}

const tick = () => new Promise((resolve) => setImmediate(resolve))

describe('WalCheckpointer', () => {
  it('checkpoints a database in its worker: every frame copied, and the next write restarts the WAL', async () => {
    const { db, write } = openDb('a.sqlite')
    db.pragma('wal_autocheckpoint = 0')
    for (let i = 0; i < 50; i++) write()
    const restarts = walCheckpointSequence(db.name)
    const r = await checkpointer.run(db.name)
    expect(r.busy).toBe(false)
    expect(r.log).toBeGreaterThanOrEqual(50)
    expect(r.checkpointed).toBe(r.log)
    expect(walCheckpointSequence(db.name)).toBe(restarts)
    write()
    expect(walCheckpointSequence(db.name)).toBe(restarts + 1)
    db.close()
    const again = new SqliteDatabase(join(dir, 'a.sqlite'))
    expect((again.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(51)
    again.close()
  })

  it('rejects a database file that does not exist', async () => {
    await expect(checkpointer.run(join(dir, 'missing.sqlite'))).rejects.toThrow()
  })
})

/** A schedule whose `exclusive` counts its holds (and flags one in progress), and a writer that tells it each write. */
function heldSchedule(db: SqliteDatabase.Database, write: () => unknown, ckpt: WalCheckpointer, opts: { everyWrites: number; exclusiveEvery?: number }) {
  const s = { exclusiveRuns: 0, held: false, writes: 0 }
  const schedule = new WalCheckpointSchedule(db, ckpt, {
    ...opts,
    // no fallback on this connection here, however slow the worker is under load
    inlineAfter: Number.MAX_SAFE_INTEGER,
    exclusive: async (fn) => {
      s.exclusiveRuns++
      s.held = true
      try {
        return await fn()
      } finally {
        s.held = false
      }
    },
  })
  const writeSome = (n: number) => {
    for (let i = 0; i < n; i++) {
      write()
      schedule.wrote()
      s.writes++
    }
  }
  return { s, schedule, writeSome }
}

describe('WalCheckpointSchedule', () => {
  it("turns SQLite's automatic checkpoints off and checkpoints in the worker while writes go on; each cycle lets the WAL restart", async () => {
    const { db, write } = openDb('b.sqlite')
    const { s, schedule, writeSome } = heldSchedule(db, write, checkpointer, { everyWrites: 20 })
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    const restarts = walCheckpointSequence(db.name)
    for (let cycle = 1; cycle <= 5; cycle++) {
      writeSome(20) // the 20th starts a checkpoint cycle
      // writes go on (a few per event-loop turn, never while the schedule holds them off) until it completes
      for (;;) {
        await tick()
        if (schedule.completed === cycle) break
        if (!s.held) writeSome(3)
      }
      expect(schedule.restartPending).toBe(true)
      const before = walCheckpointSequence(db.name)
      writeSome(1)
      expect(schedule.restartPending).toBe(false)
      expect(walCheckpointSequence(db.name)).toBe(before + 1)
    }
    await schedule.settled()
    expect(s.exclusiveRuns).toBeGreaterThanOrEqual(5)
    expect(schedule.inlineRuns).toBe(0)
    // at least one restart per cycle (checked above, each right after its cycle completed); a write that lands
    // between the worker's bulk pass and the exclusive pass may find the whole WAL copied and restart it once more
    expect(walCheckpointSequence(db.name)).toBeGreaterThanOrEqual(restarts + 5)
    expect((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(s.writes)
    db.close()
  })

  it('with exclusiveEvery, only every Nth cycle holds the writes (and lets the WAL restart); the others copy alongside them', async () => {
    const { db, write } = openDb('e.sqlite')
    let runs = 0
    const counting = { run: (file: string) => (runs++, checkpointer.run(file)) } as unknown as WalCheckpointer
    const { s, schedule, writeSome } = heldSchedule(db, write, counting, { everyWrites: 20, exclusiveEvery: 3 })
    writeSome(20)
    // writes go on (never while held) until two held cycles have completed: cycles 1, 2, 4 and 5 are one pass
    // in the worker each, cycles 3 and 6 a pass and then the rest with the writes held
    while (schedule.completed < 2) {
      await tick()
      if (!s.held && schedule.completed < 2) writeSome(3)
    }
    await schedule.settled()
    expect(s.exclusiveRuns).toBe(2)
    expect(runs).toBe(8)
    expect(schedule.restartPending).toBe(true)
    const before = walCheckpointSequence(db.name)
    writeSome(1)
    expect(walCheckpointSequence(db.name)).toBe(before + 1)
    expect((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(s.writes)
    expect(() => new WalCheckpointSchedule(db, checkpointer, { everyWrites: 20, exclusiveEvery: 0 })).toThrow(RangeError)
    db.close()
  })

  it('checkpoints on the writer’s connection when the worker cannot (inlineAfter)', async () => {
    const { db, write } = openDb('c.sqlite')
    const broken = new WalCheckpointer({ name: 'test-ckpt-closed' })
    await broken.close()
    const schedule = new WalCheckpointSchedule(db, broken, { everyWrites: 10, inlineAfter: 40 })
    const restarts = walCheckpointSequence(db.name)
    for (let i = 0; i < 39; i++) {
      write()
      schedule.wrote()
      await tick()
    }
    await schedule.settled()
    expect(schedule.inlineRuns).toBe(0)
    expect(schedule.completed).toBe(0)
    write()
    expect(walCheckpointSequence(db.name)).toBe(restarts)
    // the 40th write without a completed checkpoint: one on this connection
    schedule.wrote()
    expect(schedule.inlineRuns).toBe(1)
    write()
    expect(walCheckpointSequence(db.name)).toBe(restarts + 1)
    db.close()
  })
})
