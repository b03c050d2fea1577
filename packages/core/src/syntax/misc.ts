import { InvalidSyntaxError } from './errors.js'

export const MAX_URI_LENGTH = 8 * 1024

/**
 * A URI per RFC 3986 at the level atproto's `uri` format checks: a scheme (letter, then letters, digits,
 * `+ - .`), `:`, then a non-empty rest without whitespace that is not only slashes; at most 8 KiB.
 */
const URI_RE = /^[a-zA-Z][a-zA-Z0-9+.-]*:(?=\S*[^\s/])\S+$/

export function isValidUri(s: string): boolean {
  return typeof s === 'string' && s.length <= MAX_URI_LENGTH && URI_RE.test(s)
}

export function ensureValidUri(s: string): void {
  if (typeof s !== 'string') throw new InvalidSyntaxError('URI must be a string')
  if (s.length > MAX_URI_LENGTH) throw new InvalidSyntaxError(`URI longer than ${MAX_URI_LENGTH} characters`)
  if (!URI_RE.test(s)) {
    throw new InvalidSyntaxError(`invalid URI ${JSON.stringify(s.slice(0, 100))}: expected scheme:rest without whitespace`)
  }
}

/**
 * CID in string form, checked at the syntax level (as the `cid` lexicon format): 8–256 characters of
 * `[A-Za-z0-9+=]`, and not a CIDv0 (`Qm…`, 46 base58btc characters), which atproto does not accept.
 * Use `CID.parse` (data module) when the CID must actually decode.
 */
const CID_RE = /^[a-zA-Z0-9+=]{8,256}$/
const CIDV0_RE = /^Qm[1-9A-HJ-NP-Za-km-z]{44}$/

export function isValidCidString(s: string): boolean {
  return typeof s === 'string' && CID_RE.test(s) && !CIDV0_RE.test(s)
}

export function ensureValidCidString(s: string): void {
  if (typeof s !== 'string') throw new InvalidSyntaxError('CID must be a string')
  if (!CID_RE.test(s)) {
    throw new InvalidSyntaxError(`invalid CID ${JSON.stringify(s.slice(0, 100))}: expected 8–256 characters of [A-Za-z0-9+=]`)
  }
  if (CIDV0_RE.test(s)) throw new InvalidSyntaxError(`invalid CID ${JSON.stringify(s)}: CIDv0 is not supported`)
}
