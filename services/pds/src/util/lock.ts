/** Serialises async sections: one at a time, in arrival order. */
export class AsyncLock {
  private tail: Promise<unknown> = Promise.resolve()
  private pending = 0

  run<T>(fn: () => Promise<T>): Promise<T> {
    this.pending++
    const result = this.tail.then(fn)
    this.tail = result.then(
      () => this.pending--,
      () => this.pending--,
    )
    return result
  }

  /** sections running or waiting to run (inside one: more than 1 when others wait behind it) */
  get queued(): number {
    return this.pending
  }

  get busy(): boolean {
    return this.pending > 0
  }
}
