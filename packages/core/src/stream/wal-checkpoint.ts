/**
 * Checkpoints of SQLite databases in WAL mode, off the writer's thread.
 *
 * SQLite checkpoints a WAL database automatically (every 1,000 WAL pages by default) inside the COMMIT
 * that crosses the threshold, on the writer's thread: it copies the WAL's pages into the database file and,
 * with `synchronous = NORMAL` or FULL, fsyncs the WAL before and the database file after. For a server whose
 * writes are synchronous better-sqlite3 calls on its event loop, that is two fsyncs (milliseconds each)
 * blocking every request, every few dozen commits of each database.
 *
 * {@link WalCheckpointSchedule} turns the automatic checkpoints of one connection off
 * (`wal_autocheckpoint = 0`) and, every `everyWrites` write transactions, has a {@link WalCheckpointer}'s
 * worker thread checkpoint the file on a connection of its own (PASSIVE: it never blocks the writer, and
 * SQLite's locks make it safe alongside it). Durability is SQLite's: the worker's connection syncs as a
 * checkpoint must (the WAL before copying, the database file after, both before the WAL may be reset), and
 * the writer restarts the WAL only once a checkpoint has completed. Should the worker fail or fall behind,
 * the schedule checkpoints on the writer's connection once `inlineAfter` writes have gone by without one,
 * so the WAL never grows without bound.
 */
import { closeSync, openSync, readSync } from 'node:fs'
import type SqliteDatabase from 'better-sqlite3'
import { KeyedWorkerPool } from '../workers/pool.js'

export interface WalCheckpointResult {
  /** another connection held the checkpoint lock (nothing was done) */
  busy: boolean
  /** frames in the WAL */
  log: number
  /** frames copied into the database file (all of them: the next write restarts the WAL) */
  checkpointed: number
}

/** One worker thread that checkpoints databases by file path (tasks of one file run in order). */
export class WalCheckpointer {
  private readonly pool: KeyedWorkerPool<string, WalCheckpointResult>

  constructor(opts: { name?: string; onWorkerError?: (err: unknown) => void } = {}) {
    this.pool = new KeyedWorkerPool<string, WalCheckpointResult>({
      size: 1,
      workerUrl: new URL(`./wal-checkpoint-worker${import.meta.url.endsWith('.ts') ? '.ts' : '.js'}`, import.meta.url),
      name: opts.name ?? 'wal-checkpoint',
      onWorkerError: opts.onWorkerError,
    })
  }

  private readonly running = new Set<Promise<unknown>>()

  /** Resolves once the worker has started and answers. */
  ready(): Promise<void> {
    return this.pool.ready()
  }

  /** A PASSIVE checkpoint of `file` (a database in WAL mode) in the worker. */
  run(file: string): Promise<WalCheckpointResult> {
    const task = this.pool.run(file, file)
    const tracked = task.catch(() => undefined).finally(() => this.running.delete(tracked))
    this.running.add(tracked)
    return task
  }

  /** Lets the checkpoints in flight finish (their connections closed properly), then stops the worker. */
  async close(): Promise<void> {
    while (this.running.size > 0) await Promise.all(this.running)
    await this.pool.close()
  }
}

export interface WalCheckpointScheduleOptions {
  /** write transactions between two checkpoints */
  everyWrites: number
  /**
   * Runs `fn` while the owner makes no write to the database (e.g. under its write lock), resolving with its
   * result. A checkpoint run alongside writes copies only the frames that were in the WAL when it began, so
   * under a steady stream of writes the WAL would never be wholly copied, never restart, and grow: after
   * the bulk of it is copied alongside writes, the rest is copied with writes held off, which lets the next
   * write restart the WAL from its beginning. Without it, the schedule relies on pauses between writes.
   */
  exclusive?: <T>(fn: () => Promise<T>) => Promise<T>
  /**
   * With `exclusive`: one cycle in this many (default 1: every one) copies the rest with writes held off and
   * lets the WAL restart; the others only copy alongside the writes (the WAL grows until the next held one).
   * Each hold stalls every write behind the checkpoint's two fsyncs, so a writer whose latency matters holds
   * less often, at the cost of a WAL up to this many cycles long.
   */
  exclusiveEvery?: number
  /** write transactions without a completed checkpoint after which one runs on the writer's connection (default (15 + exclusiveEvery) × everyWrites) */
  inlineAfter?: number
}

/** The checkpoints of one connection's database, done by a {@link WalCheckpointer} (see the module's notes). */
/**
 * A writer's batch writes held back while a task runs (for {@link WalCheckpointScheduleOptions}' `exclusive`: the
 * end of a checkpoint). The writer checks `held` before a write and waits for it; `run` waits for an earlier hold,
 * then holds until its task settles.
 */
export class WriteHold {
  /** while set, writes wait; settles when released */
  held: Promise<void> | null = null

  async run<T>(fn: () => Promise<T>): Promise<T> {
    while (this.held) await this.held
    let release!: () => void
    this.held = new Promise<void>((resolve) => (release = resolve))
    try {
      return await fn()
    } finally {
      this.held = null
      release()
    }
  }
}

export class WalCheckpointSchedule {
  private sinceRequest = 0
  private sinceDone = 0
  /** the checkpoint cycle under way (bulk, then the rest with writes held off) */
  private cycle: Promise<void> | null = null
  /** the worker's checkpoint in flight */
  private running: Promise<WalCheckpointResult> | null = null
  private restartNext = false
  private readonly everyWrites: number
  private readonly inlineAfter: number
  private readonly exclusiveEvery: number
  /** cycles started (with `exclusive`: every `exclusiveEvery`th one holds the writes) */
  private cycles = 0
  /** checkpoints that left the whole WAL in the database file / run on the writer's connection (for tests and metrics) */
  completed = 0
  inlineRuns = 0

  constructor(
    private readonly db: SqliteDatabase.Database,
    private readonly checkpointer: WalCheckpointer,
    private readonly opts: WalCheckpointScheduleOptions,
  ) {
    if (!Number.isInteger(opts.everyWrites) || opts.everyWrites < 1) throw new RangeError(`everyWrites must be an integer >= 1, got ${opts.everyWrites}`)
    const exclusiveEvery = opts.exclusiveEvery ?? 1
    if (!Number.isInteger(exclusiveEvery) || exclusiveEvery < 1) throw new RangeError(`exclusiveEvery must be an integer >= 1, got ${exclusiveEvery}`)
    this.everyWrites = opts.everyWrites
    this.exclusiveEvery = exclusiveEvery
    this.inlineAfter = opts.inlineAfter ?? (15 + exclusiveEvery) * opts.everyWrites
    db.pragma('wal_autocheckpoint = 0')
  }

  /** Counts `n` committed write transactions; starts a checkpoint when due. */
  wrote(n = 1): void {
    this.restartNext = false
    this.sinceRequest += n
    this.sinceDone += n
    if (this.sinceDone >= this.inlineAfter) {
      this.checkpointInline()
      return
    }
    if (this.sinceRequest < this.everyWrites || this.cycle) return
    this.sinceRequest = 0
    const cycle: Promise<void> = this.runCycle()
      .catch(() => undefined) // not completed: the next cycle, or the inline fallback, covers it
      .finally(() => {
        if (this.cycle === cycle) this.cycle = null
      })
    this.cycle = cycle
  }

  private async runCycle(): Promise<void> {
    const held = ++this.cycles % this.exclusiveEvery === 0
    await this.inWorker()
    if (!this.db.open) return
    // (copied alongside the writes only: a later cycle holds them and lets the WAL restart)
    if (this.opts.exclusive && !held) return
    const rest = this.opts.exclusive
      ? await this.opts.exclusive(async () => (this.db.open ? this.inWorker() : null))
      : await this.inWorker()
    if (rest && !rest.busy && rest.checkpointed === rest.log) {
      this.completed++
      // with writes held off, every write counted so far is in the database file; without, the few that
      // came during the checkpoint may not be, and the next cycle takes them
      this.sinceDone = this.opts.exclusive ? 0 : Math.min(this.sinceDone, this.sinceRequest)
      this.restartNext = !!this.opts.exclusive
    }
  }

  private async inWorker(): Promise<WalCheckpointResult> {
    const run = this.checkpointer.run(this.db.name)
    this.running = run
    try {
      return await run
    } finally {
      if (this.running === run) this.running = null
    }
  }

  /**
   * The whole WAL is in the database file and nothing was written since: the next write transaction
   * restarts the WAL from its beginning, and SQLite then fsyncs the new WAL header inside that COMMIT (unless
   * `synchronous = OFF`). A caller that fdatasyncs the WAL itself before relying on the write (a group
   * commit) can turn SQLite's syncs off for that one transaction: the header and the frames reach the disk
   * together in its sync, and until then a crash finds either the old header (whose frames are all in the
   * database file) or frames that do not match the header (ignored), never a lost acknowledged write.
   */
  get restartPending(): boolean {
    return this.restartNext
  }

  /**
   * Resolves once no checkpoint of this schedule is running in the worker. (A cycle waiting for
   * `exclusive` is not waited for: the caller may be the one holding writes off.)
   */
  async settled(): Promise<void> {
    while (this.running) await this.running.catch(() => undefined)
  }

  private checkpointInline(): void {
    if (!this.db.open) return
    this.db.pragma('wal_checkpoint(PASSIVE)')
    this.inlineRuns++
    this.restartNext = false
    this.sinceRequest = 0
    this.sinceDone = 0
  }
}

/**
 * The checkpoint sequence number in a database's WAL header (`<dbFile>-wal`): SQLite increments it each time a
 * write restarts the WAL from its start after a complete checkpoint, so a rising value shows that checkpoints
 * keep the WAL from growing. For tests and diagnostics; throws if the WAL file does not exist.
 */
export function walCheckpointSequence(dbFile: string): number {
  const fd = openSync(`${dbFile}-wal`, 'r')
  try {
    const header = Buffer.alloc(16)
    readSync(fd, header, 0, 16, 0)
    return header.readUInt32BE(12)
  } finally {
    closeSync(fd)
  }
}
