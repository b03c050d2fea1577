import type { HandlerContext, RateLimitsOptions, SharedRateLimitRef } from '@stratos/core/xrpc'
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

/** Logins: per identifier and IP, 30 per 5 minutes and 300 per day. */
export const createSessionLimits = [
  { points: 30, durationMs: 5 * MINUTE, calcKey: loginKey },
  { points: 300, durationMs: DAY, calcKey: loginKey },
]

function loginKey(ctx: HandlerContext): string {
  const identifier = String((ctx.input?.body as { identifier?: unknown } | undefined)?.identifier ?? '').toLowerCase()
  return `${identifier}|${ctx.req.ip}`
}

/** Account creation: per IP, 100 per 5 minutes. */
export const createAccountLimits = [{ points: 100, durationMs: 5 * MINUTE }]
