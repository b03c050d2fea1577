/**
 * The outbound event log's group commit: events emitted together share one transaction, get consecutive
 * seqs, are durable (visible to another connection) before they are published, are published in seq order,
 * and one event's failure rolls back only that event.
 */
import { join } from 'node:path'
import SqliteDatabase from 'better-sqlite3'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AccountStore } from '../src/accounts/account-store.js'
import { openRelayDb, type Db } from '../src/db.js'
import { Outbox, type OutboxOptions } from '../src/outbox/outbox.js'
import { WalCheckpointer, decodeFrame, walCheckpointSequence } from '@stratos/core/stream'
import { tmpDir } from './helpers.js'

let dir: ReturnType<typeof tmpDir>
let db: Db
let reader: SqliteDatabase.Database
const outboxes: Outbox[] = []

const DIDS = Array.from({ length: 8 }, (_, i) => `did:plc:outboxtest${String(i).padStart(14, 'a')}`)

function outbox(opts: Partial<OutboxOptions> = {}): Outbox {
  const o = new Outbox(db, { replayWindowMs: 3600_000, replayMaxBytes: undefined, maxQueuedBytes: 1 << 20, maxQueuedFrames: 1000, pingIntervalMs: 0, ...opts })
  outboxes.push(o)
  return o
}


/** seqs of the rows another connection can read (i.e. committed) */
function committedSeqs(): number[] {
  return reader.prepare('SELECT seq FROM relay_event ORDER BY seq').all().map((r) => (r as { seq: number }).seq)
}

beforeEach(() => {
  dir = tmpDir()
  db = openRelayDb(join(dir.path, 'relay.sqlite'))
  reader = new SqliteDatabase(join(dir.path, 'relay.sqlite'), { readonly: true })
})

afterEach(async () => {
  for (const o of outboxes.splice(0)) await o.close()
  reader.close()
  db.close()
  dir.remove()
})

describe('outbox group commit', () => {
  it('appends the events of one turn in one transaction, durable before each is published, in seq order', async () => {
    const o = outbox()
    const accounts = new AccountStore(db)
    for (const did of DIDS) accounts.create(did, null)
    const published: number[] = []
    const visibleAtPublish: boolean[] = []
    // the batch goes out in one publishBatch (one corked write per consumer)
    const publishBatch = o.server.publishBatch.bind(o.server)
    vi.spyOn(o.server, 'publishBatch').mockImplementation((events) => {
      for (const { seq } of events) {
        published.push(seq)
        visibleAtPublish.push(committedSeqs().includes(seq))
      }
      publishBatch(events)
    })
    const results = await Promise.all(
      DIDS.map((did, i) =>
        o.emit('#commit', did, { repo: did, rev: `rev${i}` }, () => accounts.setUpstreamStatus(did, false, `s${i}`)),
      ),
    )
    expect(results.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(published).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    expect(visibleAtPublish.every(Boolean)).toBe(true)
    expect(o.writeStats()).toMatchObject({ batches: 1, events: 8, failed: 0, rewritten: 0 }) // no savepoint per event
    // the state changes were committed with their events
    expect(DIDS.map((did) => accounts.get(did)!.upstreamStatus)).toEqual(DIDS.map((_, i) => `s${i}`))
    // the stored frame carries the seq
    expect(o.log.readRowsAfter(0, 10).map((r) => r.did)).toEqual(DIDS)
  })

  it('rolls back only the event whose update throws; the others keep consecutive seqs', async () => {
    const o = outbox()
    const accounts = new AccountStore(db)
    for (const did of DIDS) accounts.create(did, null)
    const settled = await Promise.allSettled(
      DIDS.map((did, i) =>
        o.emit('#account', did, { did, active: false }, () => {
          accounts.setUpstreamStatus(did, false, 'deactivated')
          if (i === 3) throw new Error('update failed')
        }),
      ),
    )
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled', 'fulfilled'])
    expect(settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.seq] : []))).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(committedSeqs()).toEqual([1, 2, 3, 4, 5, 6, 7])
    expect(accounts.get(DIDS[3]!)!.upstreamStatus).toBeNull() // rolled back with its event
    expect(accounts.get(DIDS[4]!)!.upstreamStatus).toBe('deactivated')
    expect(o.writeStats()).toMatchObject({ batches: 1, events: 7, failed: 1, rewritten: 1 }) // again, with savepoints
    // the next event continues the sequence
    expect((await o.emit('#identity', DIDS[0]!, { did: DIDS[0] })).seq).toBe(8)
  })

  it('an event whose body cannot be encoded is refused alone', async () => {
    const o = outbox()
    const settled = await Promise.allSettled([
      o.emit('#identity', DIDS[0]!, { did: DIDS[0] }),
      o.emit('#identity', DIDS[1]!, { did: DIDS[1], bad: 1.5 }), // floats are not in the data model
      o.emit('#identity', DIDS[2]!, { did: DIDS[2] }),
    ])
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(committedSeqs()).toEqual([1, 2])
  })

  it('an event whose state change succeeded but whose frame cannot be encoded is rolled back with its change', async () => {
    const accounts = new AccountStore(db)
    // as the relay wires it: a rolled-back write drops the cached rows (the cache holds rows as written)
    const o = outbox({ onRollback: () => accounts.forgetCached() })
    for (const did of DIDS) accounts.create(did, null)
    const set = (did: string, rev: string) => () => accounts.setRepoState(did, { rev, commitCid: `c-${rev}`, dataCid: `d-${rev}`, syncStatus: 'synchronized' })
    for (const did of DIDS.slice(0, 3)) accounts.get(did) // cached: the write updates the cached row
    const settled = await Promise.allSettled([
      o.emit('#sync', DIDS[0]!, { did: DIDS[0], rev: 'r1' }, set(DIDS[0]!, 'r1')),
      o.emit('#sync', DIDS[1]!, { did: DIDS[1], rev: 'r1', bad: 0.5 }, set(DIDS[1]!, 'r1')), // floats cannot be encoded
      o.emit('#sync', DIDS[2]!, { did: DIDS[2], rev: 'r1' }, set(DIDS[2]!, 'r1')),
    ])
    expect(settled.map((s) => s.status)).toEqual(['fulfilled', 'rejected', 'fulfilled'])
    expect(committedSeqs()).toEqual([1, 2])
    expect(o.log.readRowsAfter(0, 10).map((r) => r.did)).toEqual([DIDS[0], DIDS[2]])
    expect(DIDS.slice(0, 3).map((did) => accounts.get(did)!.rev)).toEqual(['r1', null, 'r1'])
    const stored = reader.prepare('SELECT did, rev FROM account WHERE did IN (?, ?, ?) ORDER BY did').all(...DIDS.slice(0, 3))
    expect(stored).toEqual([
      { did: DIDS[0], rev: 'r1' },
      { did: DIDS[1], rev: null },
      { did: DIDS[2], rev: 'r1' },
    ])
  })

  it('a batch larger than one multi-row insert: every event once, in emit order, each with its Jetstream time', async () => {
    const o = outbox()
    const n = 260
    const dids = Array.from({ length: n }, (_, i) => `did:plc:many${String(i).padStart(20, 'a')}`)
    const published: number[] = []
    o.onPublish((evt) => published.push(evt.seq))
    const settled = await Promise.allSettled(dids.map((did, i) => o.emit('#identity', did, i === 77 ? { did, bad: 0.5 } : { did })))
    expect(settled.filter((s) => s.status === 'rejected')).toHaveLength(1)
    const seqs = settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value.seq] : []))
    expect(seqs).toEqual(Array.from({ length: n - 1 }, (_, i) => i + 1))
    expect(published).toEqual(seqs)
    expect(o.writeStats()).toMatchObject({ batches: 1, events: n - 1, failed: 1 })
    const rows = o.log.readRowsAfter(0, 1000)
    expect(rows.map((r) => r.did)).toEqual(dids.filter((_, i) => i !== 77))
    for (const r of rows) {
      const f = decodeFrame(r.frame)
      expect(f.op === 1 && f.body.seq).toBe(r.seq)
    }
    const times = reader.prepare('SELECT seq, time_us FROM relay_event_time ORDER BY seq').all() as { seq: number; time_us: number }[]
    expect(times.map((t) => t.seq)).toEqual(seqs)
    for (let i = 1; i < times.length; i++) expect(times[i]!.time_us).toBeGreaterThan(times[i - 1]!.time_us)
  })

  it('when writing the log rows fails, the whole batch is rolled back: no event, no state change, no stale cached row', async () => {
    const rollbacks: number[] = []
    const accounts = new AccountStore(db)
    const o = outbox({ onRollback: () => {
      rollbacks.push(1)
      accounts.forgetCached()
    } })
    for (const did of DIDS) accounts.create(did, null)
    expect((await o.emit('#identity', DIDS[0]!, { did: DIDS[0] })).seq).toBe(1)
    // the log refuses one row of the next batch (as a full disk would refuse the insert)
    db.exec(`CREATE TRIGGER refuse BEFORE INSERT ON relay_event WHEN NEW.did = '${DIDS[5]}' BEGIN SELECT RAISE(ABORT, 'refused'); END`)
    for (const did of DIDS) accounts.get(did)
    const settled = await Promise.allSettled(
      DIDS.map((did) =>
        o.emit('#sync', did, { did, rev: 'r2' }, () => accounts.setRepoState(did, { rev: 'r2', commitCid: 'c', dataCid: 'd', syncStatus: 'synchronized' })),
      ),
    )
    expect(settled.every((s) => s.status === 'rejected')).toBe(true)
    expect(rollbacks.length).toBeGreaterThan(0)
    expect(committedSeqs()).toEqual([1])
    expect(DIDS.map((did) => accounts.get(did)!.rev)).toEqual(DIDS.map(() => null))
    expect(reader.prepare('SELECT COUNT(*) AS n FROM account WHERE rev IS NOT NULL').get()).toEqual({ n: 0 })
    // the next batch continues the sequence
    db.exec('DROP TRIGGER refuse')
    expect((await o.emit('#identity', DIDS[1]!, { did: DIDS[1] })).seq).toBe(2)
  })

  it('with maxBatchSize 1 every event is its own transaction; a full batch is written without waiting', async () => {
    const o = outbox({ maxBatchSize: 1 })
    const p = DIDS.map((did) => o.emit('#identity', did, { did }))
    // written synchronously inside emit
    expect(committedSeqs()).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    await Promise.all(p)
    expect(o.writeStats()).toMatchObject({ batches: 8, events: 8 })
  })

  it('batchDelayMs gathers events emitted within the window', async () => {
    const o = outbox({ batchDelayMs: 30 })
    const first = o.emit('#identity', DIDS[0]!, { did: DIDS[0] })
    await new Promise((r) => setTimeout(r, 5))
    expect(committedSeqs()).toEqual([]) // not yet written, not yet published
    const second = o.emit('#identity', DIDS[1]!, { did: DIDS[1] })
    expect([(await first).seq, (await second).seq]).toEqual([1, 2])
    expect(o.writeStats()).toMatchObject({ batches: 1, events: 2 })
  })

  it('close() writes what is pending; later emits are refused', async () => {
    const o = outbox({ batchDelayMs: 10_000 })
    const pending = o.emit('#identity', DIDS[0]!, { did: DIDS[0] })
    await o.close()
    expect((await pending).seq).toBe(1)
    expect(committedSeqs()).toEqual([1])
    await expect(o.emit('#identity', DIDS[1]!, { did: DIDS[1] })).rejects.toThrow(/closed/)
  })

  it('commits without an fsync (synchronous = NORMAL) and publishes once the WAL fdatasync has completed', async () => {
    expect(db.pragma('synchronous', { simple: true })).toBe(1) // NORMAL, never OFF
    expect(db.pragma('journal_mode', { simple: true })).toBe('wal')
    const o = outbox()
    const results = await Promise.all(DIDS.map((did) => o.emit('#identity', did, { did })))
    expect(results.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8])
    const stats = o.writeStats()
    expect(stats.batches).toBe(1)
    expect(stats.syncs).toBeGreaterThanOrEqual(1)
    expect(o.publishedSeq).toBe(8)
  })

  it('an event committed but not yet synced is not published, not replayed, and its emit waits', async () => {
    const releases: (() => void)[] = []
    const o = outbox({ syncWal: () => new Promise<void>((r) => releases.push(r)) })
    const published: number[] = []
    o.onPublish((evt) => published.push(evt.seq))
    const settled: number[] = []
    const first = o.emit('#identity', DIDS[0]!, { did: DIDS[0] }).then((e) => settled.push(e.seq))
    await new Promise((r) => setImmediate(r))
    const second = o.emit('#identity', DIDS[1]!, { did: DIDS[1] }).then((e) => settled.push(e.seq))
    await new Promise((r) => setImmediate(r))
    await new Promise((r) => setImmediate(r))
    // both batches are committed (another connection reads them), neither is durable yet
    expect(committedSeqs()).toEqual([1, 2])
    expect(releases).toHaveLength(2)
    expect(published).toEqual([])
    expect(settled).toEqual([])
    expect(o.publishedSeq).toBe(0)
    // nothing of them for a consumer replaying the log (the SubscriptionServer's log view)
    const view = (o.server as unknown as { log: { readAfter(s: number, l: number): Promise<{ seq: number }[]>; latestSeq(): Promise<number | null> } }).log
    expect((await view.readAfter(0, 10)).map((e) => e.seq)).toEqual([])
    expect(await view.latestSeq()).toBe(null)
    // the second batch's sync completing first publishes nothing: batches go out in commit order
    releases[1]!()
    await new Promise((r) => setImmediate(r))
    expect(published).toEqual([])
    releases[0]!()
    await Promise.all([first, second])
    expect(published).toEqual([1, 2])
    expect(settled).toEqual([1, 2])
    expect(o.publishedSeq).toBe(2)
    expect((await view.readAfter(0, 10)).map((e) => e.seq)).toEqual([1, 2])
  })

  it('batches made durable by one WAL sync go to the consumers together, in seq order, and the callers are settled in order (an event refused in the last one too)', async () => {
    let releaseAll: () => void = () => undefined
    const gate = new Promise<void>((r) => (releaseAll = r))
    // one sync covering every batch committed so far (as core's WalGroupSync does): all complete at once
    const o = outbox({ syncWal: () => gate })
    const calls: number[][] = []
    const publishBatch = o.server.publishBatch.bind(o.server)
    vi.spyOn(o.server, 'publishBatch').mockImplementation((events) => {
      calls.push(events.map((e) => e.seq))
      publishBatch(events)
    })
    const published: number[] = []
    o.onPublish((evt) => published.push(evt.seq))
    const settled: string[] = []
    const track = (p: Promise<{ seq: number }>, name: string) =>
      p.then(
        (e) => settled.push(`${name}:${e.seq}`),
        () => settled.push(`${name}:rejected`),
      )
    const all = [
      track(o.emit('#identity', DIDS[0]!, { did: DIDS[0] }), 'a'),
      track(o.emit('#identity', DIDS[1]!, { did: DIDS[1] }), 'b'),
    ]
    await new Promise((r) => setImmediate(r))
    all.push(track(o.emit('#identity', DIDS[2]!, { did: DIDS[2] }), 'c'))
    await new Promise((r) => setImmediate(r))
    all.push(
      track(o.emit('#identity', DIDS[3]!, { did: DIDS[3] }), 'd'),
      track(o.emit('#identity', DIDS[4]!, { did: DIDS[4], bad: 0.5 }), 'e'),
    )
    await new Promise((r) => setImmediate(r))
    expect(committedSeqs()).toEqual([1, 2, 3, 4])
    expect(calls).toEqual([])
    releaseAll()
    await Promise.all(all)
    expect(calls).toEqual([[1, 2, 3, 4]])
    expect(published).toEqual([1, 2, 3, 4])
    expect(settled).toEqual(['a:1', 'b:2', 'c:3', 'd:4', 'e:rejected'])
    expect(o.publishedSeq).toBe(4)
    expect(o.writeStats()).toMatchObject({ batches: 3, events: 4, failed: 1 })
  })

  it('a failed WAL sync publishes nothing more, rejects the waiting emits, refuses new ones and reports it once', async () => {
    let calls = 0
    const failures: unknown[] = []
    const o = outbox({
      syncWal: async () => {
        if (++calls >= 2) throw new Error('EIO: injected fdatasync failure')
      },
      onSyncError: (err) => failures.push(err),
    })
    const published: number[] = []
    o.onPublish((evt) => published.push(evt.seq))
    expect((await o.emit('#identity', DIDS[0]!, { did: DIDS[0] })).seq).toBe(1)
    const lost = DIDS.slice(1, 4).map((did) => o.emit('#identity', did, { did }))
    for (const p of lost) await expect(p).rejects.toThrow(/EIO: injected fdatasync failure/)
    expect(published).toEqual([1])
    expect(o.publishedSeq).toBe(1)
    expect(failures).toHaveLength(1)
    expect((failures[0] as Error).message).toMatch(/EIO/)
    await expect(o.emit('#identity', DIDS[5]!, { did: DIDS[5] })).rejects.toThrow(/WAL sync failed/)
    expect(published).toEqual([1])
    expect(calls).toBe(2)
  })

  it('with a checkpointer, the WAL is checkpointed in its worker (not in a COMMIT) and restarts; every event stays, in order', async () => {
    const checkpointer = new WalCheckpointer({ name: 'test-ckpt' })
    try {
      await checkpointer.ready()
      const o = outbox({ checkpointer, checkpointEvery: 20 })
      expect(db.pragma('wal_autocheckpoint', { simple: true })).toBe(0)
      const accounts = new AccountStore(db)
      for (const did of DIDS) accounts.create(did, null)
      const before = walCheckpointSequence(db.name)
      const seqs: number[] = []
      // batches of 8 (one per DID), each with its account change, one event-loop turn apart
      for (let round = 0; round < 40; round++) {
        const batch = DIDS.map((did, i) =>
          o.emit('#account', did, { did, active: false, status: `r${round}` }, () => accounts.setUpstreamStatus(did, false, `r${round}-${i}`)),
        )
        seqs.push(...(await Promise.all(batch)).map((e) => e.seq))
      }
      expect(seqs).toEqual(Array.from({ length: 320 }, (_, i) => i + 1))
      expect(walCheckpointSequence(db.name)).toBeGreaterThan(before)
      await o.close()
      // everything is there for another connection, events and state changes
      expect(committedSeqs()).toEqual(seqs)
      expect(reader.prepare('SELECT upstream_status FROM account ORDER BY did').all().map((r) => (r as { upstream_status: string }).upstream_status)).toEqual(
        DIDS.map((_, i) => `r39-${i}`),
      )
      expect(db.pragma('synchronous', { simple: true })).toBe(1) // back to NORMAL after a restarting write
    } finally {
      await checkpointer.close()
    }
  })
})
