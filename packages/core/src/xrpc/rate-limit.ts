import { RateLimitExceededError } from './errors.js'

/** The outcome of taking points from one bucket. */
export interface RateLimitStatus {
  allowed: boolean
  /** Bucket size (the rule's points). */
  limit: number
  /** Points left after this request (0 when refused). */
  remaining: number
  /** Epoch ms at which the bucket is full again. */
  resetAt: number
  /** When refused: ms until the request could succeed. */
  retryAfterMs: number
  /** `<points>;w=<seconds>` (the RateLimit-Policy header). */
  policy: string
}

export interface BucketSpec {
  points: number
  durationMs: number
}

/** Where buckets live. The default is in memory (one process); a shared store can replace it. */
export interface RateLimitStore {
  consume(key: string, points: number, spec: BucketSpec, now: number): RateLimitStatus | Promise<RateLimitStatus>
  reset(key: string): void | Promise<void>
}

interface Bucket {
  tokens: number
  updatedAt: number
  spec: BucketSpec
}

/**
 * In-memory token buckets: each holds up to `points` tokens and refills continuously at
 * `points / durationMs`; a request takes its cost or is refused without taking anything. Full buckets
 * are dropped by a periodic sweep, so memory follows the number of recently active keys.
 */
export class MemoryRateLimitStore implements RateLimitStore {
  private buckets = new Map<string, Bucket>()
  private lastSweep = 0

  constructor(private readonly sweepIntervalMs = 60_000) {}

  consume(key: string, cost: number, spec: BucketSpec, now = Date.now()): RateLimitStatus {
    this.maybeSweep(now)
    const rate = spec.points / spec.durationMs
    let bucket = this.buckets.get(key)
    if (!bucket) {
      bucket = { tokens: spec.points, updatedAt: now, spec }
      this.buckets.set(key, bucket)
    } else {
      const elapsed = Math.max(0, now - bucket.updatedAt)
      bucket.tokens = Math.min(spec.points, bucket.tokens + elapsed * rate)
      bucket.updatedAt = now
    }
    const policy = `${spec.points};w=${Math.ceil(spec.durationMs / 1000)}`
    if (bucket.tokens >= cost) {
      bucket.tokens -= cost
      return {
        allowed: true,
        limit: spec.points,
        remaining: Math.floor(bucket.tokens),
        resetAt: now + Math.ceil((spec.points - bucket.tokens) / rate),
        retryAfterMs: 0,
        policy,
      }
    }
    const retryAfterMs = cost > spec.points ? spec.durationMs : Math.ceil((cost - bucket.tokens) / rate)
    return {
      allowed: false,
      limit: spec.points,
      remaining: 0,
      resetAt: now + Math.ceil((spec.points - bucket.tokens) / rate),
      retryAfterMs,
      policy,
    }
  }

  reset(key: string): void {
    this.buckets.delete(key)
  }

  /** Number of buckets held (for tests and metrics). */
  get size(): number {
    return this.buckets.size
  }

  private maybeSweep(now: number): void {
    if (now - this.lastSweep < this.sweepIntervalMs) return
    this.lastSweep = now
    for (const [key, b] of this.buckets) {
      const rate = b.spec.points / b.spec.durationMs
      if (b.tokens + (now - b.updatedAt) * rate >= b.spec.points) this.buckets.delete(key)
    }
  }
}

/**
 * One limit. `calcKey` picks the bucket (default: the client IP; null skips the limit for this request,
 * e.g. an unauthenticated request to a per-account limit); `calcPoints` the cost (default 1).
 */
export interface RateLimitRule<Ctx = RateLimitContext> {
  /** Names a shared limit (see RateLimitsOptions.shared); methods refer to it by name. */
  name?: string
  points: number
  durationMs: number
  calcKey?: (ctx: Ctx) => string | null | undefined
  calcPoints?: (ctx: Ctx) => number
}

/** A method's reference to a shared limit: the bucket spec comes from the server's `shared` list. */
export interface SharedRateLimitRef<Ctx = RateLimitContext> {
  name: string
  calcKey?: (ctx: Ctx) => string | null | undefined
  calcPoints?: (ctx: Ctx) => number
}

export type MethodRateLimit<Ctx = RateLimitContext> = RateLimitRule<Ctx> | SharedRateLimitRef<Ctx>

/** The least a rate-limit callback sees. Method limits get the whole handler context. */
export interface RateLimitContext {
  req: { ip?: string; headers: Record<string, string | string[] | undefined> }
  nsid?: string
}

export interface CheckedLimit {
  key: string
  status: RateLimitStatus
}

/** The bucket and cost of one rule for a request, or undefined when the rule skips it (no key, no cost). */
function charge<Ctx extends RateLimitContext>(id: string, rule: RateLimitRule<Ctx>, ctx: Ctx): { key: string; cost: number; spec: BucketSpec } | undefined {
  const keyPart = rule.calcKey ? rule.calcKey(ctx) : (ctx.req.ip ?? 'unknown')
  if (keyPart === null || keyPart === undefined) return undefined
  const cost = rule.calcPoints ? rule.calcPoints(ctx) : 1
  if (!(cost > 0)) return undefined
  return { key: `${id}|${keyPart}`, cost, spec: { points: rule.points, durationMs: rule.durationMs } }
}

/** Takes points from every applicable bucket; the tightest status decides the headers. */
export async function consumeAll<Ctx extends RateLimitContext>(
  store: RateLimitStore,
  rules: { id: string; rule: RateLimitRule<Ctx> }[],
  ctx: Ctx,
  now = Date.now(),
): Promise<CheckedLimit[]> {
  const out: CheckedLimit[] = []
  for (const { id, rule } of rules) {
    const c = charge(id, rule, ctx)
    if (c) out.push({ key: c.key, status: await store.consume(c.key, c.cost, c.spec, now) })
  }
  return out
}

/** {@link consumeAll} on the in-memory store, which answers at once (for XrpcServer's synchronous fast path). */
export function consumeAllNow<Ctx extends RateLimitContext>(
  store: MemoryRateLimitStore,
  rules: { id: string; rule: RateLimitRule<Ctx> }[],
  ctx: Ctx,
  now = Date.now(),
): CheckedLimit[] {
  const out: CheckedLimit[] = []
  for (const { id, rule } of rules) {
    const c = charge(id, rule, ctx)
    if (c) out.push({ key: c.key, status: store.consume(c.key, c.cost, c.spec, now) })
  }
  return out
}

/** The status to report: a refusal (longest wait) if any, else the one with the fewest points left. */
export function tightest(checked: CheckedLimit[]): RateLimitStatus | undefined {
  let worst: RateLimitStatus | undefined
  for (const { status } of checked) {
    if (!worst) worst = status
    else if (!status.allowed && (worst.allowed || status.retryAfterMs > worst.retryAfterMs)) worst = status
    else if (status.allowed && worst.allowed && status.remaining / status.limit < worst.remaining / worst.limit) worst = status
  }
  return worst
}

/** RateLimit-* response headers for a status (Reset as epoch seconds, like the reference PDS). */
export function rateLimitHeaders(status: RateLimitStatus): Record<string, string> {
  return {
    'RateLimit-Limit': String(status.limit),
    'RateLimit-Remaining': String(status.remaining),
    'RateLimit-Reset': String(Math.ceil(status.resetAt / 1000)),
    'RateLimit-Policy': status.policy,
  }
}

export function rateLimitError(status: RateLimitStatus): RateLimitExceededError {
  return new RateLimitExceededError('Rate Limit Exceeded', status.retryAfterMs / 1000, rateLimitHeaders(status))
}
