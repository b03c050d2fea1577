/**
 * Remembers service-JWT nonces (jti) until their token expires, so a captured token cannot be replayed
 * while it is still valid. In-process; bounded (oldest entries evicted first when full).
 */
export interface JtiReplayCacheOptions {
  /** default 100 000 */
  maxEntries?: number
  /** clock, ms since epoch (tests) */
  now?: () => number
}

export class JtiReplayCache {
  private readonly entries = new Map<string, number>()
  private readonly maxEntries: number
  private readonly now: () => number
  private nextSweep = 0

  constructor(opts: JtiReplayCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 100_000
    this.now = opts.now ?? Date.now
  }

  /**
   * True if `key` was not seen (or its previous use has expired) and remembers it until `expiresAtMs`;
   * false if it is a replay.
   */
  checkAndRemember(key: string, expiresAtMs: number): boolean {
    const now = this.now()
    if (now >= this.nextSweep) this.sweep(now)
    const prev = this.entries.get(key)
    if (prev !== undefined && prev > now) return false
    this.entries.delete(key)
    this.entries.set(key, expiresAtMs)
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value
      if (oldest === undefined) break
      this.entries.delete(oldest)
    }
    return true
  }

  has(key: string): boolean {
    const exp = this.entries.get(key)
    return exp !== undefined && exp > this.now()
  }

  get size(): number {
    return this.entries.size
  }

  /** Drops expired entries. */
  sweep(now = this.now()): void {
    for (const [key, exp] of this.entries) if (exp <= now) this.entries.delete(key)
    this.nextSweep = now + 60_000
  }
}
