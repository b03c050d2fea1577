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

describe('WalCheckpointSchedule', () => {
  it("turns SQLite's automatic checkpoints off and checkpoints in the worker while writes go on; each cycle lets the WAL restart", async () => {
    const { db, write } = openDb('b.sqlite')
    let exclusiveRuns = 0
    let held = false
    const schedule = new WalCheckpointSchedule(db, checkpointer, {
      everyWrites: 20,
      // no fallback on this connection here, however slow the worker is under load
      inlineAfter: Number.MAX_SAFE_INTEGER,
      exclusive: async (fn) => {
        exclusiveRuns++
        held = true
        try {
          return await fn()
        } finally {
          held = false
        }
      },
    })
    expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
    const restarts = walCheckpointSequence(db.name)
    let writes = 0
    const writeSome = (n: number) => {
      for (let i = 0; i < n; i++) {
        write()
        schedule.wrote()
        writes++
      }
    }
    for (let cycle = 1; cycle <= 5; cycle++) {
      writeSome(20) // the 20th starts a checkpoint cycle
      // writes go on (a few per event-loop turn, never while the schedule holds them off) until it completes
      for (;;) {
        await tick()
        if (schedule.completed === cycle) break
        if (!held) writeSome(3)
      }
      expect(schedule.restartPending).toBe(true)
      const before = walCheckpointSequence(db.name)
      writeSome(1)
      expect(schedule.restartPending).toBe(false)
      expect(walCheckpointSequence(db.name)).toBe(before + 1)
    }
    await schedule.settled()
    expect(exclusiveRuns).toBeGreaterThanOrEqual(5)
    expect(schedule.inlineRuns).toBe(0)
    // at least one restart per cycle (checked above, each right after its cycle completed); a write that lands
    // between the worker's bulk pass and the exclusive pass may find the whole WAL copied and restart it once more
    expect(walCheckpointSequence(db.name)).toBeGreaterThanOrEqual(restarts + 5)
    expect((db.prepare('SELECT count(*) AS n FROM t').get() as { n: number }).n).toBe(writes)
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
