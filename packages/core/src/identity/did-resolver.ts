/**
 * Fetching DID documents over the network: did:plc from a PLC directory, did:web from
 * `https://<host>/.well-known/did.json`. No caching here (see IdentityResolver).
 */
import { isValidHandle } from '@atproto/syntax'
import { ensureDidDocument, DidDocumentError, type DidDocument } from './did-doc.js'
import { safeFetch, SafeFetchError, type LookupAllFn } from './safe-fetch.js'

export type DidResolutionErrorCode =
  | 'bad-syntax'
  | 'unsupported-method'
  | 'not-found'
  | 'fetch-failed'
  | 'bad-document'
  | 'no-signing-key'

export class DidResolutionError extends Error {
  override name = 'DidResolutionError'
  constructor(
    readonly code: DidResolutionErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

const DID_RE = /^did:[a-z]+:[a-zA-Z0-9._:%-]*[a-zA-Z0-9._-]$/
const DID_PLC_RE = /^did:plc:[a-z2-7]{24}$/

export interface DidFetcherOptions {
  /** PLC directory base URL, e.g. https://plc.directory (trusted: operator configuration) */
  plcUrl: string
  timeoutMs?: number
  maxResponseBytes?: number
  /** development: did:web on localhost over http, and private addresses reachable */
  allowPrivateAddresses?: boolean
  lookup?: LookupAllFn
  /** keep connections to the PLC directory open between requests (safeFetch's keepAlive; default false) */
  plcKeepAlive?: boolean
}

function isLocalhost(host: string): boolean {
  return host === 'localhost' || host.endsWith('.localhost')
}

/**
 * The URL of a did:web document. Only hostname did:webs (no path form). A port (`%3A1234`) and plain
 * http are accepted only for localhost and only when `dev` is true.
 */
export function didWebUrl(did: string, dev = false): URL {
  if (!did.startsWith('did:web:')) throw new DidResolutionError('bad-syntax', `not a did:web: ${did}`)
  const id = did.slice('did:web:'.length)
  if (id.includes(':')) {
    throw new DidResolutionError('unsupported-method', `did:web with a path is not supported: ${did}`)
  }
  let decoded: string
  try {
    decoded = decodeURIComponent(id)
  } catch {
    throw new DidResolutionError('bad-syntax', `bad percent-encoding in ${did}`)
  }
  const m = /^([^:/?#@[\]]+)(?::(\d{1,5}))?$/.exec(decoded)
  if (!m) throw new DidResolutionError('bad-syntax', `did:web has no valid hostname: ${did}`)
  const host = m[1]!.toLowerCase()
  const port = m[2]
  const local = isLocalhost(host)
  if (local) {
    if (!dev) throw new DidResolutionError('bad-syntax', `did:web on localhost is for development only: ${did}`)
  } else {
    if (!isValidHandle(host)) throw new DidResolutionError('bad-syntax', `did:web hostname is not valid: ${did}`)
    if (port !== undefined) throw new DidResolutionError('bad-syntax', `did:web with a port is for localhost only: ${did}`)
  }
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) {
    throw new DidResolutionError('bad-syntax', `did:web port out of range: ${did}`)
  }
  const scheme = local ? 'http' : 'https'
  return new URL(`${scheme}://${host}${port !== undefined ? `:${port}` : ''}/.well-known/did.json`)
}

export function isValidDidSyntax(did: string): boolean {
  return typeof did === 'string' && did.length <= 2048 && DID_RE.test(did)
}

/** Fetches DID documents; returns null when the method's server says the DID does not exist. */
export class DidFetcher {
  private readonly plcUrl: string
  private readonly timeoutMs: number
  private readonly maxBytes: number
  private readonly dev: boolean
  private readonly lookup: LookupAllFn | undefined
  private readonly plcKeepAlive: boolean

  constructor(opts: DidFetcherOptions) {
    this.plcUrl = opts.plcUrl.replace(/\/+$/, '')
    this.timeoutMs = opts.timeoutMs ?? 10_000
    this.maxBytes = opts.maxResponseBytes ?? 256 * 1024
    this.dev = opts.allowPrivateAddresses ?? false
    this.lookup = opts.lookup
    this.plcKeepAlive = opts.plcKeepAlive ?? false
  }

  async fetch(did: string): Promise<DidDocument | null> {
    if (!isValidDidSyntax(did)) throw new DidResolutionError('bad-syntax', `invalid DID: ${String(did).slice(0, 300)}`)
    if (did.startsWith('did:plc:')) {
      if (!DID_PLC_RE.test(did)) throw new DidResolutionError('bad-syntax', `invalid did:plc: ${did}`)
      // the directory URL is operator configuration, so it may live on a private network
      return this.fetchDoc(did, `${this.plcUrl}/${encodeURIComponent(did)}`, true, this.plcKeepAlive)
    }
    if (did.startsWith('did:web:')) {
      return this.fetchDoc(did, didWebUrl(did, this.dev).toString(), this.dev, false)
    }
    throw new DidResolutionError('unsupported-method', `unsupported DID method: ${did.split(':')[1]}`)
  }

  private async fetchDoc(did: string, url: string, allowPrivate: boolean, keepAlive: boolean): Promise<DidDocument | null> {
    let res
    try {
      res = await safeFetch(url, {
        timeoutMs: this.timeoutMs,
        maxBytes: this.maxBytes,
        allowPrivateAddresses: allowPrivate,
        headers: { accept: 'application/did+ld+json, application/json' },
        lookup: this.lookup,
        keepAlive,
      })
    } catch (err) {
      const why = err instanceof SafeFetchError ? `${err.code}: ${err.message}` : String(err)
      throw new DidResolutionError('fetch-failed', `could not fetch DID document for ${did} (${why})`, { cause: err })
    }
    if (res.status === 404 || res.status === 410) return null
    if (!res.ok) {
      throw new DidResolutionError('fetch-failed', `DID document fetch for ${did} returned HTTP ${res.status}`)
    }
    let json: unknown
    try {
      json = res.json()
    } catch (err) {
      throw new DidResolutionError('bad-document', `DID document for ${did} is not JSON`, { cause: err })
    }
    try {
      return ensureDidDocument(json, did)
    } catch (err) {
      const message = err instanceof DidDocumentError ? err.message : String(err)
      throw new DidResolutionError('bad-document', message, { cause: err })
    }
  }
}
