/**
 * Group commit for live ingest: verified events hand their index writes here and many of them are
 * applied in one transaction (in the order they were handed in, which keeps each account's order and,
 * across accounts, the order in which their checks finished). One batch runs at a time; what arrives
 * while it commits forms the next one, so batches grow with the load and add no delay when idle.
 *
 * A batch that fails as a whole (a deadlock given up on, a bad row) is applied again one write per
 * transaction, so one bad write costs only itself.
 */
import type { Transaction } from 'kysely'
import type { DatabaseSchema } from '../indexer/schema.js'

export type BatchTx = Transaction<DatabaseSchema>

const DEFAULT_BULK_UNTIL = 10_000

interface Item<S> {
  fn: (tx: BatchTx, state: S) => Promise<void>
  /** how much work the write is (records), for the linger rule */
  weight: number
  /** what the write will touch (record URIs), looked up for the whole batch at once (`prepare`) */
  keys?: readonly string[]
  /** a bulk write (a backfilled repo): see `bulkUntil` */
  bulk: boolean
  resolve: () => void
  reject: (err: unknown) => void
}

export interface BatchWriterOptions<S> {
  /** runs `fn` in one transaction (the indexer's, with its retries) */
  transact: <T>(fn: (tx: BatchTx) => Promise<T>) => Promise<T>
  /** what the writes of one batch share (counters summed, rows collected), made anew for each attempt */
  begin: () => S
  /** at the batch's start, inside its transaction: the keys the batch's writes declared */
  prepare?: (tx: BatchTx, state: S, keys: string[]) => Promise<void>
  /** after every write of the batch, inside its transaction: writes what they collected */
  end: (tx: BatchTx, state: S) => Promise<void>
  /** writes per transaction at most (default 500) */
  maxBatch?: number
  /**
   * Under load, a batch waits up to this long for more writes before it starts (default 0: never). A
   * transaction costs much less per write when it holds many writes: each page it changes (an index
   * leaf, a table page) goes to the WAL once per transaction, and with random keys (URIs) most writes
   * change pages of their own in every index. The batch waits only while the previous batch was large
   * (at least `lingerAbove` in weight: an idle stream's writes are not delayed), only while writes keep
   * coming (it starts as soon as none came in a millisecond) and only until `lingerUntil` is queued.
   */
  lingerMs?: number
  /**
   * default 2: a batch of two writes is enough to linger after. With 16 (before), a stream that fell into
   * small batches stayed there: at the 1M-record bench's live burst, runs of one tree held 7-9 commits per
   * transaction (main thread 250-266 µs per commit) or 43 (146 µs), whichever regime the run started in;
   * a single write (an idle stream) is still never held
   */
  lingerAbove?: number
  /** default 1,000 */
  lingerUntil?: number
  /**
   * A batch that holds only bulk writes (first backfills of repos, `write(..., { bulk: true })`) waits for
   * more of them until this much weight (records) is queued (default 10,000; 0: never waits this way).
   * Backfilled repos arrive one every few tens of milliseconds (as workers finish verifying them), too far
   * apart for the `lingerMs` rule, so a backfill transaction held about `lingerUntil` (two repos of 500
   * records at the 1M-record bench) and wrote 8.5 KB of WAL per record, mostly random index leaves, which
   * larger transactions share (5.5 KB at 40 repos). It waits only while bulk writes keep coming (one within
   * `bulkGapMs`), at most `bulkMaxMs` in all, and stops as soon as a live write is queued (live writes are
   * never held for a backfill). The bound also bounds the records held in memory waiting for it.
   */
  bulkUntil?: number
  /** default 50 ms */
  bulkGapMs?: number
  /** default 1,000 ms */
  bulkMaxMs?: number
  /** after each batch: how many writes it held and how long it took */
  onBatch?: (size: number, ms: number) => void
}

export class BatchWriter<S> {
  private queue: Item<S>[] = []
  /** the queue's total weight */
  private queued = 0
  private running = false
  /** the weight of the last batch */
  private lastWeight = 0
  /** queued writes that are not bulk */
  private liveQueued = 0
  /** called when a write is queued (a bulk linger waiting for the next one) */
  private arrived: (() => void) | null = null
  readonly stats = { batches: 0, writes: 0, fallbacks: 0, lingered: 0, bulkLingered: 0 }

  constructor(private readonly opts: BatchWriterOptions<S>) {}

  private paused: Promise<void> | null = null
  private unpause: () => void = () => undefined

  /** Holds the next batches (writes queue up) until `resume` (tests: a batch of a known size). */
  pause(): void {
    if (!this.paused) this.paused = new Promise<void>((resolve) => (this.unpause = resolve))
  }

  resume(): void {
    this.paused = null
    this.unpause()
  }

  /** Writes waiting for the next batch. */
  get pending(): number {
    return this.queue.length
  }

  /**
   * Queues a write (`weight`: how many records it writes, default 1; `bulk`: a backfill's, see
   * `bulkUntil`); resolves once its batch has committed.
   */
  write(fn: (tx: BatchTx, state: S) => Promise<void>, keys?: readonly string[], weight = 1, bulk = false): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ fn, weight, bulk, resolve, reject, ...(keys ? { keys } : {}) })
      this.queued += weight
      if (!bulk) this.liveQueued++
      if (this.arrived) this.arrived()
      if (!this.running) {
        this.running = true
        // the end of this turn: writes handed in by the same socket read share the batch
        setImmediate(() => void this.drain())
      }
    })
  }

  private async drain(): Promise<void> {
    try {
      while (this.queue.length > 0) {
        if (this.paused) await this.paused
        const max = this.opts.maxBatch ?? 500
        await this.linger(max)
        // (a pause that came while lingering holds this batch too)
        if (this.paused) await this.paused
        const batch = this.queue.length <= max ? this.queue : this.queue.slice(0, max)
        this.queue = this.queue.length <= max ? [] : this.queue.slice(max)
        let weight = 0
        for (const item of batch) {
          weight += item.weight
          if (!item.bulk) this.liveQueued--
        }
        this.queued -= weight
        this.lastWeight = weight
        const t0 = performance.now()
        try {
          await this.run(batch)
          for (const item of batch) item.resolve()
        } catch {
          // one by one: only the writes that fail on their own are lost
          this.stats.fallbacks++
          for (const item of batch) {
            try {
              await this.run([item])
              item.resolve()
            } catch (err) {
              item.reject(err)
            }
          }
        }
        this.stats.batches++
        this.stats.writes += batch.length
        this.opts.onBatch?.(batch.length, performance.now() - t0)
      }
    } finally {
      this.running = false
    }
  }

  /** See `lingerMs`: waits while the last batch was large and writes keep coming, up to `lingerUntil` queued. */
  private async linger(max: number): Promise<void> {
    if (this.liveQueued === 0 && (this.opts.bulkUntil ?? DEFAULT_BULK_UNTIL) > 0) return this.lingerBulk(max)
    const ms = this.opts.lingerMs ?? 0
    if (ms <= 0 || this.lastWeight < (this.opts.lingerAbove ?? 2)) return
    const until = this.opts.lingerUntil ?? 1000
    const deadline = performance.now() + ms
    let lingered = false
    while (this.queued < until && this.queue.length < max && performance.now() < deadline) {
      const before = this.queue.length
      await new Promise((r) => setTimeout(r, 1))
      lingered = true
      if (this.queue.length === before) break
    }
    if (lingered) this.stats.lingered++
  }

  /** See `bulkUntil`: waits while bulk writes keep coming and no live write is queued, up to `bulkUntil` queued. */
  private async lingerBulk(max: number): Promise<void> {
    const until = this.opts.bulkUntil ?? DEFAULT_BULK_UNTIL
    const gap = this.opts.bulkGapMs ?? 50
    const deadline = performance.now() + (this.opts.bulkMaxMs ?? 1000)
    let lingered = false
    while (this.queued < until && this.queue.length < max && this.liveQueued === 0) {
      const wait = Math.min(gap, deadline - performance.now())
      if (wait <= 0) break
      const before = this.queue.length
      let timer: NodeJS.Timeout | undefined
      await new Promise<void>((resolve) => {
        this.arrived = resolve
        timer = setTimeout(resolve, wait)
      })
      clearTimeout(timer)
      this.arrived = null
      lingered = true
      if (this.queue.length === before) break
    }
    if (lingered) this.stats.bulkLingered++
  }

  private run(batch: Item<S>[]): Promise<void> {
    return this.opts.transact(async (tx) => {
      const state = this.opts.begin()
      if (this.opts.prepare) {
        const keys: string[] = []
        for (const item of batch) if (item.keys) for (const k of item.keys) keys.push(k)
        if (keys.length > 0) await this.opts.prepare(tx, state, keys)
      }
      for (const item of batch) await item.fn(tx, state)
      await this.opts.end(tx, state)
    })
  }
}
