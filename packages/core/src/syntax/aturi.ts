/**
 * AT URIs in the restricted Lexicon form: `at://<handle|DID>[/<NSID>[/<rkey>]]`. No query, no fragment,
 * no trailing slash, at most 8 KiB. (The general AT URI syntax allows `?query` and `#fragment`; the
 * `AtUri` class re-exported from @atproto/syntax handles that.)
 */
import { InvalidSyntaxError } from './errors.js'
import { isValidAtIdentifier, isValidNsid, isValidRecordKey } from './identifiers.js'

export const MAX_AT_URI_LENGTH = 8 * 1024

export interface AtUriParts {
  authority: string
  collection?: string
  rkey?: string
}

/** Returns the parts, or a reason string when the URI is invalid. */
function check(s: string): AtUriParts | string {
  if (typeof s !== 'string') return 'must be a string'
  if (s.length > MAX_AT_URI_LENGTH) return `longer than ${MAX_AT_URI_LENGTH} characters`
  if (!s.startsWith('at://')) return 'must start with "at://"'
  const rest = s.slice(5)
  if (/[?#]/.test(rest)) return 'query and fragment parts are not allowed'
  const parts = rest.split('/')
  if (parts.length > 3) return 'too many path segments (at most collection and record key)'
  const [authority, collection, rkey] = parts as [string, string | undefined, string | undefined]
  if (!isValidAtIdentifier(authority)) return 'authority is not a valid handle or DID'
  if (collection !== undefined && !isValidNsid(collection)) {
    return collection === '' ? 'trailing slash is not allowed' : 'collection is not a valid NSID'
  }
  if (rkey !== undefined && !isValidRecordKey(rkey)) {
    return rkey === '' ? 'trailing slash is not allowed' : 'record key is not valid'
  }
  const out: AtUriParts = { authority }
  if (collection !== undefined) out.collection = collection
  if (rkey !== undefined) out.rkey = rkey
  return out
}

export function isValidAtUri(s: string): boolean {
  return typeof check(s) !== 'string'
}

export function ensureValidAtUri(s: string): void {
  const r = check(s)
  if (typeof r === 'string') {
    throw new InvalidSyntaxError(`invalid AT URI ${JSON.stringify(String(s).slice(0, 100))}: ${r}`)
  }
}

/** Splits a valid Lexicon-form AT URI into authority / collection / rkey; throws InvalidSyntaxError. */
export function parseAtUri(s: string): AtUriParts {
  const r = check(s)
  if (typeof r === 'string') {
    throw new InvalidSyntaxError(`invalid AT URI ${JSON.stringify(String(s).slice(0, 100))}: ${r}`)
  }
  return r
}
