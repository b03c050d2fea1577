/**
 * Identities of the accounts the relay sees: the #atproto signing key and the #atproto_pds host, from DID
 * documents cached in memory and in identity.sqlite. A document is fetched again on `#identity`, when an
 * event comes from another host than the cached one, and once after a failed signature check.
 */
import {
  DidResolutionError,
  IdentityResolver,
  parseDidDocument,
  type CachedDidDocument,
  type DidDocument,
  type IdentityCache,
} from '@stratos/core/identity'
import { endpointHostname } from '../hosts/hostname.js'

export interface ResolvedIdentity {
  did: string
  handle?: string
  signingKey?: string
  pdsEndpoint?: string
  /** `host[:port]` of the PDS endpoint, as hosts are keyed */
  pdsHost?: string
}

export type IdentityFailure = 'identity-not-found' | 'identity-invalid' | 'identity-unavailable'

export class IdentityLookupError extends Error {
  constructor(
    readonly reason: IdentityFailure,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
    this.name = 'IdentityLookupError'
  }
}

/** A bounded in-memory layer in front of a persistent cache (SQLite), so hot DIDs cost no I/O. */
export class LayeredIdentityCache implements IdentityCache {
  private readonly memory = new Map<string, CachedDidDocument>()
  constructor(
    private readonly backing: IdentityCache,
    private readonly maxEntries = 50_000,
  ) {}

  async get(did: string): Promise<CachedDidDocument | null> {
    const hit = this.memory.get(did)
    if (hit) return hit
    const stored = await this.backing.get(did)
    if (stored) this.remember(did, stored)
    return stored
  }

  async set(did: string, doc: DidDocument, updatedAt: number): Promise<void> {
    this.remember(did, { doc, updatedAt })
    await this.backing.set(did, doc, updatedAt)
  }

  async delete(did: string): Promise<void> {
    this.memory.delete(did)
    await this.backing.delete(did)
  }

  private remember(did: string, entry: CachedDidDocument): void {
    this.memory.delete(did)
    this.memory.set(did, entry)
    while (this.memory.size > this.maxEntries) {
      const oldest = this.memory.keys().next().value
      if (oldest === undefined) break
      this.memory.delete(oldest)
    }
  }
}

export class Identities {
  /**
   * The parsed identity per DID, next to the document it was parsed from. Parsing a document (its
   * Multikey → did:key conversion in particular) is the costly part of a lookup, and the resolver hands
   * back the same document object while it is cached, so a hit is a map lookup and an identity check.
   * A different document object (refetched, reloaded from SQLite) is parsed again; `refresh` (on
   * `#identity`) drops the entry.
   */
  private readonly parsed = new Map<string, { doc: DidDocument; ident: ResolvedIdentity }>()

  constructor(
    readonly resolver: IdentityResolver,
    private readonly maxParsed = 50_000,
  ) {}

  /**
   * The account's identity (cached). `force` fetches the document again, unless it was fetched very
   * recently (the resolver's minimum refresh interval bounds what bad events can make the relay fetch).
   * Throws IdentityLookupError. The returned object is shared and frozen.
   */
  async resolve(did: string, force = false): Promise<ResolvedIdentity> {
    let doc: DidDocument | null
    try {
      doc = await this.resolver.resolveDid(did, { forceRefresh: force })
    } catch (err) {
      throw lookupError(did, err)
    }
    if (!doc) {
      this.parsed.delete(did)
      throw new IdentityLookupError('identity-not-found', `DID not found (or tombstoned): ${did}`)
    }
    const hit = this.parsed.get(did)
    if (hit && hit.doc === doc) return hit.ident
    const ident = toIdentity(did, doc)
    this.parsed.delete(did)
    this.parsed.set(did, { doc, ident })
    while (this.parsed.size > this.maxParsed) {
      const oldest = this.parsed.keys().next().value
      if (oldest === undefined) break
      this.parsed.delete(oldest)
    }
    return ident
  }

  /** Drops the cached document (and its parsed identity) and fetches it now (on `#identity`). */
  async refresh(did: string): Promise<ResolvedIdentity> {
    this.parsed.delete(did)
    await this.resolver.invalidate(did)
    return this.resolve(did)
  }

  /** Number of parsed identities held (for tests and metrics). */
  get parsedCount(): number {
    return this.parsed.size
  }
}

function lookupError(did: string, err: unknown): IdentityLookupError {
  if (err instanceof DidResolutionError) {
    if (err.code === 'not-found') return new IdentityLookupError('identity-not-found', `DID not found: ${did}`, { cause: err })
    if (err.code === 'fetch-failed') {
      return new IdentityLookupError('identity-unavailable', `could not fetch the DID document of ${did}: ${err.message}`, {
        cause: err,
      })
    }
    return new IdentityLookupError('identity-invalid', `${did}: ${err.message}`, { cause: err })
  }
  return new IdentityLookupError('identity-unavailable', `resolving ${did} failed: ${(err as Error)?.message ?? err}`, {
    cause: err,
  })
}

function toIdentity(did: string, doc: DidDocument): ResolvedIdentity {
  let parsed
  try {
    parsed = parseDidDocument(doc, did)
  } catch (err) {
    throw new IdentityLookupError('identity-invalid', `bad DID document for ${did}: ${(err as Error).message}`, { cause: err })
  }
  const out: ResolvedIdentity = { did }
  if (parsed.handle) out.handle = parsed.handle
  if (parsed.signingKey) out.signingKey = parsed.signingKey
  if (parsed.pdsEndpoint) {
    out.pdsEndpoint = parsed.pdsEndpoint
    const host = endpointHostname(parsed.pdsEndpoint)
    if (host) out.pdsHost = host
  }
  return Object.freeze(out)
}
