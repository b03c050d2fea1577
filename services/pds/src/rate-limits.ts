import { rateLimitError, rateLimitHeaders, type HandlerContext, type RateLimitsOptions, type RateLimitStore, type SharedRateLimitRef } from '@stratos/core/xrpc'
import type { PdsConfig } from './config.js'

const MINUTE = 60_000
const HOUR = 60 * MINUTE
const DAY = 24 * HOUR

/** Repo write costs, as the reference PDS counts them against an account's hourly and daily budget. */
export const WRITE_POINTS = { create: 3, update: 2, delete: 1 } as const

const didOf = (ctx: HandlerContext): string | null => {
  const creds = ctx.auth?.credentials as { did?: unknown } | null | undefined
  return typeof creds?.did === 'string' ? creds.did : null
}

/**
 * Rate limits (PDS_RATE_LIMITS_ENABLED): per IP across every method, per account for repo writes
 * (points per hour and per day), and per identifier + IP for logins and per IP for account creation.
 * A request carrying PDS_RATE_LIMIT_BYPASS_KEY in `x-ratelimit-bypass` skips them.
 */
export function rateLimitOptions(cfg: PdsConfig): RateLimitsOptions {
  const bypassKey = cfg.rateLimits.bypassKey
  return {
    enabled: cfg.rateLimits.enabled,
    global: [{ name: 'global-ip', points: 3000, durationMs: 5 * MINUTE }],
    shared: [
      { name: 'repo-write-hour', points: 5000, durationMs: HOUR, calcKey: (ctx) => didOf(ctx) },
      { name: 'repo-write-day', points: 35000, durationMs: DAY, calcKey: (ctx) => didOf(ctx) },
    ],
    bypass: bypassKey ? (req) => req.headers['x-ratelimit-bypass'] === bypassKey : undefined,
  }
}

/** The account's write budget, charged `points(ctx)` per request. */
export function repoWriteLimits(points: (ctx: HandlerContext) => number): SharedRateLimitRef<HandlerContext>[] {
  return [
    { name: 'repo-write-hour', calcPoints: points },
    { name: 'repo-write-day', calcPoints: points },
  ]
}

/** Logins: per account (as resolved from the identifier) and IP, 30 per 5 minutes and 300 per day. */
export const LOGIN_LIMITS = [
  { points: 30, durationMs: 5 * MINUTE },
  { points: 300, durationMs: DAY },
]

/**
 * Takes a login attempt from the buckets of `account` (the account's DID once the identifier is
 * resolved, so handle, DID and email share one budget; else the normalised identifier) and the client
 * IP. Throws 429 when either bucket is empty. Nothing happens when rate limits are off or bypassed.
 */
export async function consumeLoginLimit(
  cfg: PdsConfig,
  store: RateLimitStore,
  ctx: Pick<HandlerContext, 'req' | 'reply'>,
  account: string,
): Promise<void> {
  if (!cfg.rateLimits.enabled) return
  const bypassKey = cfg.rateLimits.bypassKey
  if (bypassKey && ctx.req.headers['x-ratelimit-bypass'] === bypassKey) return
  const now = Date.now()
  let tightest
  for (const [i, spec] of LOGIN_LIMITS.entries()) {
    const status = await store.consume(`login:${i}|${account}|${ctx.req.ip}`, 1, spec, now)
    if (!status.allowed) throw rateLimitError(status)
    if (!tightest || status.remaining / status.limit < tightest.remaining / tightest.limit) tightest = status
  }
  if (tightest) ctx.reply.headers(rateLimitHeaders(tightest))
}

/** Account creation: per IP, 20 per 5 minutes and 100 per day (on by default in production). */
export const createAccountLimits = [
  { points: 20, durationMs: 5 * MINUTE },
  { points: 100, durationMs: DAY },
]
