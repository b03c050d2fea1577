import { Writable } from 'node:stream'
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

/** A stream that collects the log lines written to it into `into`. */
export const lineSink = (into: string[]) => new Writable({ write: (chunk, _enc, cb) => (into.push(...String(chunk).split('\n').filter(Boolean)), cb()) })

/** A request log line's fields that do not vary between two servers (no time, pid, host port or response time). */
export function logFields(line: string): Record<string, unknown> {
  const { time, pid, hostname, responseTime, ...rest } = JSON.parse(line) as Record<string, unknown>
  const req = rest.req as Record<string, unknown> | undefined
  if (req) rest.req = { ...req, remotePort: 'port', host: String(req.host).replace(/:\d+$/, ':port') }
  return rest
}
