/**
 * Per-host event rate limits: a token bucket for events per second (the relay slows down reading from
 * the host), fixed hour and day windows (the host is throttled until the window is over). Pure state
 * machine: the caller passes the clock.
 */
import type { HostLimits } from '../config.js'

export type TakeResult = { ok: true } | { ok: false; waitMs: number } | { ok: false; throttleUntil: number; window: 'hour' | 'day' }

interface Usage {
  tokens: number
  refilledAt: number
  hourKey: number
  hourCount: number
  dayKey: number
  dayCount: number
}

const HOUR = 3600_000
const DAY = 24 * HOUR

export class HostRateLimiter {
  private readonly usage = new Map<number, Usage>()

  /** Accounts one event for `hostId` if its limits allow it now. */
  take(hostId: number, limits: HostLimits, now = Date.now()): TakeResult {
    let u = this.usage.get(hostId)
    if (!u) {
      u = { tokens: limits.perSecond ?? 0, refilledAt: now, hourKey: 0, hourCount: 0, dayKey: 0, dayCount: 0 }
      this.usage.set(hostId, u)
    }
    const hourKey = Math.floor(now / HOUR)
    const dayKey = Math.floor(now / DAY)
    if (u.hourKey !== hourKey) {
      u.hourKey = hourKey
      u.hourCount = 0
    }
    if (u.dayKey !== dayKey) {
      u.dayKey = dayKey
      u.dayCount = 0
    }
    if (limits.perDay !== null && u.dayCount >= limits.perDay) {
      return { ok: false, throttleUntil: (dayKey + 1) * DAY, window: 'day' }
    }
    if (limits.perHour !== null && u.hourCount >= limits.perHour) {
      return { ok: false, throttleUntil: (hourKey + 1) * HOUR, window: 'hour' }
    }
    if (limits.perSecond !== null) {
      const rate = limits.perSecond
      u.tokens = Math.min(rate, u.tokens + ((now - u.refilledAt) / 1000) * rate)
      u.refilledAt = now
      if (u.tokens < 1) return { ok: false, waitMs: Math.max(1, Math.ceil(((1 - u.tokens) / rate) * 1000)) }
      u.tokens -= 1
    }
    u.hourCount++
    u.dayCount++
    return { ok: true }
  }

  /** Events counted in the current hour and day. */
  counts(hostId: number, now = Date.now()): { hour: number; day: number } {
    const u = this.usage.get(hostId)
    if (!u) return { hour: 0, day: 0 }
    return {
      hour: u.hourKey === Math.floor(now / HOUR) ? u.hourCount : 0,
      day: u.dayKey === Math.floor(now / DAY) ? u.dayCount : 0,
    }
  }

  forget(hostId: number): void {
    this.usage.delete(hostId)
  }
}

/** The limits that apply to a host: the admin's per-host overrides over the trusted or default set. */
export function effectiveLimits(
  overrides: Partial<HostLimits> | null,
  trusted: boolean,
  defaults: HostLimits,
  trustedDefaults: HostLimits,
): HostLimits {
  const base = trusted ? trustedDefaults : defaults
  return {
    perSecond: overrides?.perSecond !== undefined ? overrides.perSecond : base.perSecond,
    perHour: overrides?.perHour !== undefined ? overrides.perHour : base.perHour,
    perDay: overrides?.perDay !== undefined ? overrides.perDay : base.perDay,
    accounts: overrides?.accounts !== undefined ? overrides.accounts : base.accounts,
  }
}
