/**
 * Runs tasks one at a time per key (an account's DID), in the order they were submitted, while tasks of
 * different keys run concurrently.
 */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<void>>()
  private running = 0

  /** Tasks submitted and not yet finished. */
  get size(): number {
    return this.running
  }

  /** Queues `task` behind the key's earlier tasks; resolves when it has run (never rejects: `task` handles its errors). */
  run(key: string, task: () => Promise<void>): Promise<void> {
    this.running++
    const prev = this.tails.get(key) ?? Promise.resolve()
    const next = prev.then(task).catch(() => undefined).finally(() => {
      this.running--
    })
    this.tails.set(key, next)
    void next.then(() => {
      if (this.tails.get(key) === next) this.tails.delete(key)
    })
    return next
  }

  /** Resolves when every task submitted so far has finished. */
  async idle(): Promise<void> {
    while (this.tails.size > 0) await Promise.all([...this.tails.values()])
  }
}
