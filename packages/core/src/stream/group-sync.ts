import { open, type FileHandle } from 'node:fs/promises'

/**
 * Group commit for a SQLite database in WAL mode with `synchronous = NORMAL` (commits are written to the
 * WAL but not fsynced): `await sync()` resolves once an fdatasync of the WAL file that *began after the
 * call* has completed, so every transaction committed before the call is durable. Concurrent callers share
 * one fdatasync, and the fdatasync runs on libuv's thread pool, never blocking the event loop.
 *
 * The WAL file must exist when `sync()` is first called (i.e. after the first committed write) and must
 * stay open by SQLite for this object's lifetime (SQLite removes it only when the last connection closes).
 * With `keepOpen: false` the WAL is opened for each fdatasync and closed after it (no file descriptor held
 * between syncs, and no stale descriptor if the WAL was deleted and recreated meanwhile: for databases
 * whose connections are closed and reopened, like a PDS's per-account stores).
 */
export class WalGroupSync {
  private handle: Promise<FileHandle> | null = null
  private waiting: { resolve: () => void; reject: (err: unknown) => void }[] = []
  private running = false
  /** fdatasyncs done (for metrics and benchmarks) */
  syncs = 0

  private readonly keepOpen: boolean

  constructor(
    readonly walPath: string,
    opts: { keepOpen?: boolean } = {},
  ) {
    this.keepOpen = opts.keepOpen ?? true
  }

  /** A sync is queued or running. */
  get pending(): boolean {
    return this.running || this.waiting.length > 0
  }

  /** Resolves when everything committed to the database before this call is on disk. */
  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject })
      if (!this.running) void this.loop()
    })
  }

  private async loop(): Promise<void> {
    this.running = true
    try {
      while (this.waiting.length > 0) {
        const batch = this.waiting
        this.waiting = []
        try {
          this.handle ??= open(this.walPath, 'r')
          const fh = await this.handle
          try {
            await fh.datasync()
          } finally {
            if (!this.keepOpen) {
              this.handle = null
              await fh.close().catch(() => undefined)
            }
          }
          this.syncs++
          for (const w of batch) w.resolve()
        } catch (err) {
          this.handle = null
          for (const w of batch) w.reject(err)
        }
      }
    } finally {
      this.running = false
    }
  }

  /** Waits for a sync in flight, then closes the file handle. */
  async close(): Promise<void> {
    if (this.waiting.length > 0 || this.running) await this.sync().catch(() => undefined)
    const h = this.handle
    this.handle = null
    if (h) await (await h).close().catch(() => undefined)
  }
}
