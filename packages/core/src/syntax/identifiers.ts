/**
 * Handle, DID, NSID, record key, TID and at-identifier validation. These delegate to @atproto/syntax,
 * which passes every interop vector for them; the ensureValid* variants rethrow its errors as
 * InvalidSyntaxError so callers have one error class to catch.
 */
import * as atsyntax from '@atproto/syntax'
import { InvalidSyntaxError } from './errors.js'

function ensure(kind: string, input: unknown, check: (s: string) => void): void {
  if (typeof input !== 'string') throw new InvalidSyntaxError(`${kind} must be a string`)
  try {
    check(input)
  } catch (err) {
    const reason = err instanceof Error ? err.message : String(err)
    throw new InvalidSyntaxError(`invalid ${kind} ${JSON.stringify(input.slice(0, 100))}: ${reason}`)
  }
}

export function isValidHandle(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidHandle(s)
}
export function ensureValidHandle(s: string): void {
  ensure('handle', s, atsyntax.ensureValidHandle)
}

/** Handles are case-insensitive; the normalized form is lowercase. */
export function normalizeHandle(handle: string): string {
  return handle.toLowerCase()
}

/** Lowercases and validates; throws InvalidSyntaxError. */
export function normalizeAndEnsureValidHandle(handle: string): string {
  const normalized = normalizeHandle(handle)
  ensureValidHandle(normalized)
  return normalized
}

/**
 * TLDs that are syntactically valid but never resolvable/allowed for atproto handles
 * (`.alt .arpa .example .internal .invalid .local .localhost .onion`).
 */
export const DISALLOWED_HANDLE_TLDS = ['.alt', '.arpa', '.example', '.internal', '.invalid', '.local', '.localhost', '.onion']

/** False for handles under a TLD that atproto never resolves (see DISALLOWED_HANDLE_TLDS). */
export function isAllowedHandleTld(handle: string): boolean {
  const h = handle.toLowerCase()
  return !DISALLOWED_HANDLE_TLDS.some((tld) => h.endsWith(tld))
}

export function isValidDid(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidDid(s)
}
export function ensureValidDid(s: string): void {
  ensure('DID', s, atsyntax.ensureValidDid)
}

export function isValidNsid(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidNsid(s)
}
export function ensureValidNsid(s: string): void {
  ensure('NSID', s, atsyntax.ensureValidNsid)
}

export function isValidRecordKey(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidRecordKey(s)
}
export function ensureValidRecordKey(s: string): void {
  ensure('record key', s, atsyntax.ensureValidRecordKey)
}

export function isValidTid(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidTid(s)
}
export function ensureValidTid(s: string): void {
  ensure('TID', s, atsyntax.ensureValidTid)
}

/** A handle or a DID. */
export function isValidAtIdentifier(s: string): boolean {
  return typeof s === 'string' && atsyntax.isValidAtIdentifier(s)
}
export function ensureValidAtIdentifier(s: string): void {
  ensure('at-identifier', s, atsyntax.ensureValidAtIdentifier)
}
