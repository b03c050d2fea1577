/**
 * The batch writer's linger rule (BatchWriterOptions.lingerMs): after a large batch, the next one waits
 * while writes keep coming, so a burst is written in fewer, larger transactions; after a small batch (an
 * idle stream) a write is not held. What is checked is how the writes were grouped into transactions
 * (the transaction function here records each batch), not how long anything took.
 */
import { describe, expect, it } from 'vitest'
import { BatchWriter, type BatchTx } from '../src/ingest/batch-writer.js'

/** A writer whose "transactions" record the writes they ran (ids), in order. */
function recordingWriter(opts: { lingerMs?: number; lingerAbove?: number; lingerUntil?: number; maxBatch?: number; bulkUntil?: number; bulkGapMs?: number; bulkMaxMs?: number }) {
  const batches: number[][] = []
  let current: number[] = []
  const writer = new BatchWriter<null>({
    transact: async (fn) => {
      current = []
      const out = await fn(null as unknown as BatchTx)
      batches.push(current)
      return out
    },
    begin: () => null,
    end: async () => undefined,
    ...opts,
  })
  const write = (id: number, weight = 1) => writer.write(async () => void current.push(id), undefined, weight)
  const bulk = (id: number, weight = 1) => writer.write(async () => void current.push(id), undefined, weight, true)
  return { writer, batches, write, bulk }
}

/** `n` writes handed in one per event-loop turn (as a socket's frames or workers' answers arrive). */
async function trickle(write: (id: number) => Promise<void>, from: number, n: number): Promise<void> {
  const done: Promise<void>[] = []
  for (let i = 0; i < n; i++) {
    done.push(write(from + i))
    await new Promise((r) => setImmediate(r))
  }
  await Promise.all(done)
}

describe('BatchWriter linger', () => {
  it('after a large batch, writes that keep coming join the next batch (up to lingerUntil)', async () => {
    const { writer, batches, write } = recordingWriter({ lingerMs: 10_000, lingerAbove: 4, lingerUntil: 20 })
    // a first batch of 5 (all handed in at once): large enough to linger after
    await Promise.all([1, 2, 3, 4, 5].map((i) => write(i)))
    expect(batches).toEqual([[1, 2, 3, 4, 5]])
    await trickle(write, 100, 40)
    // the trickle is written in batches of about lingerUntil, every write once and in order
    const later = batches.slice(1)
    expect(later.flat()).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i))
    expect(later[0]!.length).toBeGreaterThanOrEqual(20)
    expect(writer.stats.lingered).toBeGreaterThan(0)
  })

  it('without linger, the same trickle goes out as it arrives (the reference)', async () => {
    const { batches, write } = recordingWriter({})
    await Promise.all([1, 2, 3, 4, 5].map((i) => write(i)))
    await trickle(write, 100, 40)
    const later = batches.slice(1)
    expect(later.flat()).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i))
    expect(Math.max(...later.map((b) => b.length))).toBeLessThan(20)
  })

  it('after a small batch, a write is not held', async () => {
    const { writer, batches, write } = recordingWriter({ lingerMs: 10_000, lingerAbove: 4, lingerUntil: 20 })
    await write(1)
    await write(2)
    await trickle(write, 100, 3)
    expect(batches).toEqual([[1], [2], [100], [101], [102]])
    expect(writer.stats.lingered).toBe(0)
  })

  it('by default, a batch of two is enough to linger after, and a single write is not held', async () => {
    // (the ingester's setting: without lingerAbove)
    const { writer, batches, write } = recordingWriter({ lingerMs: 10_000, lingerUntil: 20 })
    await write(1)
    await write(2)
    await Promise.all([3, 4].map((i) => write(i)))
    expect(batches).toEqual([[1], [2], [3, 4]])
    expect(writer.stats.lingered).toBe(0)
    await trickle(write, 100, 40)
    const later = batches.slice(3)
    expect(later.flat()).toEqual(Array.from({ length: 40 }, (_, i) => 100 + i))
    expect(later[0]!.length).toBeGreaterThanOrEqual(20)
    expect(writer.stats.lingered).toBeGreaterThan(0)
  })

  it('weights count: one write of many records is a large batch', async () => {
    const { writer, batches, write } = recordingWriter({ lingerMs: 10_000, lingerAbove: 50, lingerUntil: 100 })
    await write(1, 60)
    await trickle((id) => write(id, 10), 100, 12)
    expect(batches[0]).toEqual([1])
    // lingered until 100 in weight (10 writes of 10) were queued
    expect(batches[1]!.length).toBeGreaterThanOrEqual(10)
    expect(batches.slice(1).flat()).toEqual(Array.from({ length: 12 }, (_, i) => 100 + i))
    expect(writer.stats.lingered).toBeGreaterThan(0)
  })

  it('a pause that comes while a batch lingers holds that batch until resume', async () => {
    const { writer, batches, write } = recordingWriter({ lingerMs: 10_000, lingerAbove: 4, lingerUntil: 1000 })
    await Promise.all([1, 2, 3, 4, 5].map((i) => write(i)))
    const first = write(100)
    // the batch is lingering now (writes keep coming): held from here
    await new Promise((r) => setImmediate(r))
    writer.pause()
    const more = trickle(write, 101, 5)
    await new Promise((r) => setTimeout(r, 20))
    expect(batches).toEqual([[1, 2, 3, 4, 5]])
    writer.resume()
    await Promise.all([first, more])
    expect(batches.slice(1).flat()).toEqual([100, 101, 102, 103, 104, 105])
  })
})

describe('BatchWriter bulk writes (backfilled repos)', () => {
  const apart = (ms: number) => new Promise((r) => setTimeout(r, ms))

  it('bulk writes that arrive milliseconds apart share one transaction, up to bulkUntil in weight', async () => {
    // (the ingester's live settings: the 1 ms linger rule alone writes each of these on its own)
    const { writer, batches, bulk } = recordingWriter({ lingerMs: 10, bulkUntil: 100, bulkGapMs: 1000, bulkMaxMs: 10_000 })
    const done: Promise<void>[] = []
    for (let i = 0; i < 30; i++) {
      done.push(bulk(i, 10))
      await apart(3)
    }
    await Promise.all(done)
    // repos of 10 records: 10 of them per transaction
    expect(batches.map((b) => b.length)).toEqual([10, 10, 10])
    expect(batches.flat()).toEqual([...Array(30).keys()])
    expect(writer.stats.bulkLingered).toBeGreaterThan(0)
  })

  it('a live write is not held for a backfill: it ends the wait at once', async () => {
    const { batches, bulk, write } = recordingWriter({ lingerMs: 10, bulkUntil: 100, bulkGapMs: 10_000, bulkMaxMs: 10_000 })
    const first = bulk(1, 10)
    await apart(5)
    const t0 = performance.now()
    await write(2)
    expect(performance.now() - t0).toBeLessThan(1000)
    await first
    expect(batches).toEqual([[1, 2]])
  })

  it('a bulk write is held no longer than bulkGapMs once no other comes', async () => {
    const { batches, bulk } = recordingWriter({ bulkUntil: 100, bulkGapMs: 20, bulkMaxMs: 10_000 })
    const t0 = performance.now()
    await bulk(1, 10)
    expect(performance.now() - t0).toBeLessThan(1000)
    expect(batches).toEqual([[1]])
  })
})
