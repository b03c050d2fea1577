import { expect } from 'vitest'
import { MemoryRateLimitStore } from '@stratos/core/xrpc'
import type { BucketSpec, RateLimitStatus } from '../../src/xrpc/rate-limit.js'

/** The in-memory store, recording every charge (key, cost, outcome). */
export class RecordingStore extends MemoryRateLimitStore {
  readonly charges: string[] = []
  override consume(key: string, cost: number, spec: BucketSpec, now?: number): RateLimitStatus {
    const status = super.consume(key, cost, spec, now)
    this.charges.push(`${key} -${cost} ${status.allowed ? `ok ${status.remaining}` : 'refused'}`)
    return status
  }
}

/**
 * Expects the fast path's answer `a` to equal the regular path's `b`, but for the reset time (epoch seconds)
 * and the wait, which may straddle a second between the two calls.
 */
export function expectSameAnswer(
  request: Record<string, unknown>,
  a: { status: number; body: string; headers: Record<string, string> },
  b: { status: number; body: string; headers: Record<string, string> },
): void {
  for (const name of ['ratelimit-reset', 'retry-after']) {
    expect(name in a.headers).toBe(name in b.headers)
    expect(Math.abs(Number(a.headers[name] ?? 0) - Number(b.headers[name] ?? 0))).toBeLessThanOrEqual(1)
    delete a.headers[name]
    delete b.headers[name]
  }
  expect({ ...request, ...a }).toEqual({ ...request, ...b })
}
