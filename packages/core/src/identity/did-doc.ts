/**
 * Pure helpers over DID documents: the atproto signing key, PDS endpoint and claimed handle, and
 * service lookups by fragment id. Nothing here does I/O.
 */
import { isValidHandle } from '@atproto/syntax'
import { didKeyFromVerificationMethod as didKeyOfMethod } from '../crypto/index.js'

export interface VerificationMethod {
  id: string
  type: string
  controller?: string
  publicKeyMultibase?: string
  [key: string]: unknown
}

export interface DidService {
  id: string
  type: string | string[]
  serviceEndpoint: string | Record<string, unknown> | Array<string | Record<string, unknown>>
  [key: string]: unknown
}

export interface DidDocument {
  '@context'?: unknown
  id: string
  alsoKnownAs?: string[]
  verificationMethod?: VerificationMethod[]
  service?: DidService[]
  [key: string]: unknown
}

/** The atproto view of a DID document. */
export interface AtprotoIdentity {
  did: string
  /** the claimed handle (first valid at:// entry of alsoKnownAs), lowercased; not verified */
  handle?: string
  /** did:key of the #atproto verification method */
  signingKey?: string
  /** #atproto_pds service endpoint */
  pdsEndpoint?: string
}

export class DidDocumentError extends Error {
  override name = 'DidDocumentError'
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/**
 * Structural check of a DID document: an object whose `id` is a string and whose `alsoKnownAs`,
 * `verificationMethod` and `service` (when present) are arrays. If `expectedDid` is given, `id` must
 * equal it. Throws DidDocumentError.
 */
export function ensureDidDocument(doc: unknown, expectedDid?: string): DidDocument {
  if (!isRecord(doc)) throw new DidDocumentError('DID document is not a JSON object')
  if (typeof doc.id !== 'string') throw new DidDocumentError('DID document has no id')
  if (expectedDid !== undefined && doc.id !== expectedDid) {
    throw new DidDocumentError(`DID document id ${doc.id.slice(0, 300)} does not match ${expectedDid}`)
  }
  for (const field of ['alsoKnownAs', 'verificationMethod', 'service'] as const) {
    if (doc[field] !== undefined && !Array.isArray(doc[field])) {
      throw new DidDocumentError(`DID document ${field} is not an array`)
    }
  }
  return doc as DidDocument
}

/** `#frag` and `<did>#frag` both name fragment `frag` of `did`. */
function idMatches(entryId: unknown, did: string, fragment: string): boolean {
  if (typeof entryId !== 'string') return false
  const frag = fragment.startsWith('#') ? fragment : `#${fragment}`
  return entryId === frag || entryId === `${did}${frag}`
}

/** did:key of one verification method (Multikey, or the legacy Ecdsa*VerificationKey2019 types); undefined when it has none. */
export function didKeyFromVerificationMethod(method: unknown): string | undefined {
  if (!isRecord(method)) return undefined
  try {
    return didKeyOfMethod(method)
  } catch {
    return undefined
  }
}

/**
 * did:key of the verification method with the given fragment (default `#atproto`). Only the first
 * entry with that id counts; undefined if it is missing, of an unknown type, or not a valid key.
 */
export function getVerificationKey(doc: DidDocument, keyId = '#atproto'): string | undefined {
  const methods = Array.isArray(doc.verificationMethod) ? doc.verificationMethod : []
  const method = methods.find((m) => isRecord(m) && idMatches(m.id, doc.id, keyId))
  if (!method) return undefined
  if (method.controller !== undefined && method.controller !== doc.id) return undefined
  return didKeyFromVerificationMethod(method)
}

/** A parsed http(s) URL without credentials, query or fragment; undefined otherwise. */
function validEndpoint(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined
  let url: URL
  try {
    url = new URL(value)
  } catch {
    return undefined
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined
  if (!url.hostname || url.username || url.password || url.search || url.hash) return undefined
  return value
}

/**
 * Endpoint URL of the first service whose id is `id` (`#atproto_pds` or `<did>#atproto_pds`), if its
 * type matches `type` (when given) and its endpoint is an http(s) URL.
 */
export function getServiceEndpoint(doc: DidDocument, id: string, type?: string): string | undefined {
  const services = Array.isArray(doc.service) ? doc.service : []
  const service = services.find((s) => isRecord(s) && idMatches(s.id, doc.id, id))
  if (!service) return undefined
  if (type !== undefined) {
    const types = Array.isArray(service.type) ? service.type : [service.type]
    if (!types.includes(type)) return undefined
  }
  return validEndpoint(service.serviceEndpoint)
}

/**
 * The claimed handle: the first alsoKnownAs entry of the form `at://<valid handle>` (nothing after the
 * host), lowercased. Other entries are ignored.
 */
export function getHandle(doc: DidDocument): string | undefined {
  const aka = Array.isArray(doc.alsoKnownAs) ? doc.alsoKnownAs : []
  for (const entry of aka) {
    if (typeof entry !== 'string' || !entry.startsWith('at://')) continue
    const handle = entry.slice('at://'.length)
    if (isValidHandle(handle)) return handle.toLowerCase()
  }
  return undefined
}

export function getPdsEndpoint(doc: DidDocument): string | undefined {
  return getServiceEndpoint(doc, '#atproto_pds', 'AtprotoPersonalDataServer')
}

/**
 * The atproto data of a DID document (pure). Throws DidDocumentError if the document is not
 * structurally a DID document or (when `expectedDid` is given) its id is a different DID.
 */
export function parseDidDocument(doc: unknown, expectedDid?: string): AtprotoIdentity {
  const d = ensureDidDocument(doc, expectedDid)
  const out: AtprotoIdentity = { did: d.id }
  const handle = getHandle(d)
  if (handle !== undefined) out.handle = handle
  const signingKey = getVerificationKey(d, '#atproto')
  if (signingKey !== undefined) out.signingKey = signingKey
  const pdsEndpoint = getPdsEndpoint(d)
  if (pdsEndpoint !== undefined) out.pdsEndpoint = pdsEndpoint
  return out
}
