/**
 * TIDs: 13 characters of base32-sortable (`234567abcdefghijklmnopqrstuvwxyz`) encoding a 64-bit integer
 * 0 | 53-bit microseconds since the Unix epoch | 10-bit clock id.
 */
import { randomInt } from 'node:crypto'
import { InvalidSyntaxError } from './errors.js'
import { isValidTid } from './identifiers.js'

const ALPHABET = '234567abcdefghijklmnopqrstuvwxyz'
const MAX_TIMESTAMP_US = 2 ** 53 - 1

function encode(n: number, width: number): string {
  let out = ''
  for (let i = 0; i < width; i++) {
    out = ALPHABET[n % 32] + out
    n = Math.floor(n / 32)
  }
  return out
}

function decode(s: string): number {
  let n = 0
  for (const ch of s) {
    const v = ALPHABET.indexOf(ch)
    if (v < 0) throw new InvalidSyntaxError(`invalid TID character ${JSON.stringify(ch)}`)
    n = n * 32 + v
  }
  return n
}

/** TID for a timestamp in microseconds since the epoch and a clock id (0–1023). */
export function tidFromTime(timestampUs: number, clockId: number): string {
  if (!Number.isSafeInteger(timestampUs) || timestampUs < 0 || timestampUs > MAX_TIMESTAMP_US) {
    throw new RangeError('TID timestamp must be an integer in [0, 2^53)')
  }
  if (!Number.isInteger(clockId) || clockId < 0 || clockId > 1023) throw new RangeError('TID clock id must be 0–1023')
  return encode(timestampUs, 11) + encode(clockId, 2)
}

/** Microseconds since the epoch encoded in a TID. Throws InvalidSyntaxError for an invalid TID. */
export function tidToTimestampUs(tid: string): number {
  if (!isValidTid(tid)) throw new InvalidSyntaxError(`invalid TID ${JSON.stringify(String(tid).slice(0, 20))}`)
  return decode(tid.slice(0, 11))
}

export function tidClockId(tid: string): number {
  if (!isValidTid(tid)) throw new InvalidSyntaxError(`invalid TID ${JSON.stringify(String(tid).slice(0, 20))}`)
  return decode(tid.slice(11))
}

/**
 * Strictly monotonic TID generator. Each `next()` is greater than every TID this clock produced before,
 * even when several are produced in the same microsecond or the wall clock goes backwards: the timestamp
 * is max(now, last + 1µs). `next(after)` is also greater than `after` (e.g. the previous repo rev).
 */
export class TidClock {
  readonly clockId: number
  private lastUs = 0

  constructor(clockId: number = randomInt(0, 1024)) {
    if (!Number.isInteger(clockId) || clockId < 0 || clockId > 1023) throw new RangeError('clock id must be 0–1023')
    this.clockId = clockId
  }

  next(after?: string): string {
    let us = Date.now() * 1000
    if (us <= this.lastUs) us = this.lastUs + 1
    if (after !== undefined) {
      const afterUs = tidToTimestampUs(after)
      if (us <= afterUs) us = afterUs + 1
    }
    this.lastUs = us
    return tidFromTime(us, this.clockId)
  }
}

const defaultClock = new TidClock()

/** Next TID from a process-wide TidClock. */
export function nextTid(after?: string): string {
  return defaultClock.next(after)
}

/** Compares TIDs (they sort lexicographically). */
export function compareTids(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}
