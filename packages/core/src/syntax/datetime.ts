/**
 * atproto datetimes: the intersection of RFC 3339, ISO 8601 and WHATWG. Uppercase `T` and `Z`, seconds
 * required, any number of fractional digits, timezone required (`Z` or `±HH:MM`, never `-00:00`),
 * 4-digit unsigned year, semantically valid, not before 0000-01-01T00:00:00Z once normalized.
 */
import { InvalidSyntaxError } from './errors.js'

const DATETIME_RE =
  /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:Z|([+-])(\d{2}):(\d{2}))$/

/** Earliest allowed instant: 0000-01-01T00:00:00Z. */
const MIN_TIME = new Date(0).setUTCFullYear(0, 0, 1)

/** Syntax-level check only (no calendar validation). */
export function isValidDatetimeSyntax(s: string): boolean {
  return typeof s === 'string' && DATETIME_RE.test(s) && !s.endsWith('-00:00')
}

function parse(s: string): Date | string {
  if (typeof s !== 'string') return 'must be a string'
  const m = DATETIME_RE.exec(s)
  if (!m) return 'not an RFC 3339 / ISO 8601 datetime (YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM))'
  if (s.endsWith('-00:00')) return 'timezone -00:00 is not allowed'
  const [year, month, day, hour, minute, second] = m.slice(1, 7).map(Number) as [number, number, number, number, number, number]
  const frac = m[7] ?? ''
  const sign = m[8]
  const offH = Number(m[9] ?? 0)
  const offM = Number(m[10] ?? 0)
  if (month < 1 || month > 12) return `month ${month} out of range`
  const daysInMonth = new Date(Date.UTC(2000, month, 0)).getUTCDate() // 2000 is a leap year
  const leap = (year % 4 === 0 && year % 100 !== 0) || year % 400 === 0
  if (day < 1 || day > daysInMonth || (month === 2 && day === 29 && !leap)) return `day ${day} out of range`
  if (hour > 23) return `hour ${hour} out of range`
  if (minute > 59) return `minute ${minute} out of range`
  if (second > 59) return `second ${second} out of range`
  if (offH > 23 || offM > 59) return 'timezone offset out of range'
  const d = new Date(0)
  d.setUTCFullYear(year, month - 1, day)
  d.setUTCHours(hour, minute, second, Number((frac + '000').slice(0, 3)))
  const offsetMs = (offH * 60 + offM) * 60_000
  const t = d.getTime() - (sign === '+' ? offsetMs : sign === '-' ? -offsetMs : 0)
  if (t < MIN_TIME) return 'normalizes to before year 0000'
  return new Date(t)
}

/** Full check: syntax and calendar semantics. */
export function isValidDatetime(s: string): boolean {
  return parse(s) instanceof Date
}

export function ensureValidDatetime(s: string): void {
  parseDatetime(s)
}

/** Parses a valid atproto datetime to a Date (millisecond precision). Throws InvalidSyntaxError. */
export function parseDatetime(s: string): Date {
  const r = parse(s)
  if (typeof r === 'string') {
    throw new InvalidSyntaxError(`invalid datetime ${JSON.stringify(String(s).slice(0, 100))}: ${r}`)
  }
  return r
}

/** The preferred form: `YYYY-MM-DDTHH:MM:SS.sssZ`. */
export function toDatetimeString(date: Date | number = Date.now()): string {
  return new Date(date).toISOString()
}

/**
 * Normalizes a valid datetime to the preferred UTC form (millisecond precision). Throws
 * InvalidSyntaxError. Keep the original string when round-tripping records.
 */
export function normalizeDatetime(s: string): string {
  return parseDatetime(s).toISOString()
}
