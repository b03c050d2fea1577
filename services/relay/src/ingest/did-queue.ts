/**
 * Runs tasks one at a time per key (an account's DID), in the order they were submitted, while tasks of
 * different keys run concurrently. A task may let the key's next task start before it has finished by
 * calling `release()` (the ingester does once a #commit's verification is under way, so the account's next
 * #commit is verified meanwhile, and judged after it).
 */
export class KeyedQueue {
  /** per key: resolves when the key's last task has finished or released the key */
  private readonly tails = new Map<string, Promise<void>>()
  /** every task submitted and not yet finished (released or not) */
  private readonly active = new Set<Promise<void>>()

  /** Tasks submitted and not yet finished. */
  get size(): number {
    return this.active.size
  }

  /**
   * Queues `task` behind the key's earlier tasks (each finished or released); resolves when it has finished
   * (never rejects: `task` handles its errors).
   */
  run(key: string, task: (release: () => void) => Promise<void>): Promise<void> {
    let release!: () => void
    const released = new Promise<void>((resolve) => {
      release = resolve
    })
    const prev = this.tails.get(key) ?? Promise.resolve()
    const done = prev
      .then(() => task(release))
      .catch(() => undefined)
      .finally(() => {
        release()
        this.active.delete(done)
      })
    this.active.add(done)
    this.tails.set(key, released)
    void released.then(() => {
      if (this.tails.get(key) === released) this.tails.delete(key)
    })
    return done
  }

  /** Resolves when every task submitted so far has finished. */
  async idle(): Promise<void> {
    while (this.active.size > 0) await Promise.all([...this.active])
  }
}
