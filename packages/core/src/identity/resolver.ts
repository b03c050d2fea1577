/**
 * IdentityResolver: DIDs (cached, with stale and max TTLs), handles, and the atproto data services
 * need (signing key, PDS endpoint, verified handle).
 *
 * Cache policy: younger than `staleTtlMs` → served; between stale and `maxTtlMs` → served and refreshed
 * in the background; older than max → fetched before answering. `forceRefresh` fetches now (on
 * `#identity` events, and once after a signature check fails). Concurrent fetches of one DID share
 * one request.
 */
import { MemoryIdentityCache, type IdentityCache } from './cache.js'
import { getVerificationKey, parseDidDocument, type AtprotoIdentity, type DidDocument } from './did-doc.js'
import { DidFetcher, DidResolutionError } from './did-resolver.js'
import { HandleResolver, type ResolveTxtFn } from './handle-resolver.js'
import type { LookupAllFn } from './safe-fetch.js'

export const DEFAULT_STALE_TTL_MS = 60 * 60 * 1000
export const DEFAULT_MAX_TTL_MS = 24 * 60 * 60 * 1000

export interface IdentityResolverOptions {
  /** PLC directory base URL (GET <plcUrl>/<did>) */
  plcUrl: string
  timeoutMs?: number
  maxResponseBytes?: number
  /** development: http did:web on localhost and private addresses for did:web hosts and handles */
  allowPrivateAddresses?: boolean
  cache?: IdentityCache
  staleTtlMs?: number
  maxTtlMs?: number
  /** see HandleResolverOptions.httpBase (development: handles served by PDSes on loopback) */
  handleResolverHttpBase?: string
  /** replaces DNS TXT lookups (tests, custom resolvers) */
  resolveTxt?: ResolveTxtFn
  /** replaces dns.lookup for outbound requests (tests) */
  lookup?: LookupAllFn
  /** keep connections to the PLC directory open between requests (default false) */
  plcKeepAlive?: boolean
  /** clock, ms since epoch (tests) */
  now?: () => number
  /**
   * A forced refresh is skipped (the cached document served) if the cached copy is younger than this.
   * Bounds how often bad signatures claiming one DID can make us hit the network. Default 0 (never skip).
   */
  minForceRefreshIntervalMs?: number
  /** background refresh failures (the stale document keeps being served) */
  onBackgroundError?: (err: unknown, did: string) => void
}

export interface ResolveDidOptions {
  forceRefresh?: boolean
}

export class IdentityResolver {
  readonly cache: IdentityCache
  readonly dids: DidFetcher
  readonly handles: HandleResolver
  private readonly staleTtlMs: number
  private readonly maxTtlMs: number
  private readonly minForceRefreshIntervalMs: number
  private readonly now: () => number
  private readonly onBackgroundError: (err: unknown, did: string) => void
  private readonly inflight = new Map<string, Promise<DidDocument | null>>()
  private readonly background = new Set<Promise<unknown>>()

  constructor(opts: IdentityResolverOptions) {
    this.cache = opts.cache ?? new MemoryIdentityCache()
    this.staleTtlMs = opts.staleTtlMs ?? DEFAULT_STALE_TTL_MS
    this.maxTtlMs = Math.max(opts.maxTtlMs ?? DEFAULT_MAX_TTL_MS, this.staleTtlMs)
    this.minForceRefreshIntervalMs = opts.minForceRefreshIntervalMs ?? 0
    this.now = opts.now ?? Date.now
    this.onBackgroundError = opts.onBackgroundError ?? (() => undefined)
    this.dids = new DidFetcher({
      plcUrl: opts.plcUrl,
      timeoutMs: opts.timeoutMs,
      maxResponseBytes: opts.maxResponseBytes,
      allowPrivateAddresses: opts.allowPrivateAddresses,
      lookup: opts.lookup,
      plcKeepAlive: opts.plcKeepAlive,
    })
    this.handles = new HandleResolver({
      timeoutMs: opts.timeoutMs,
      allowPrivateAddresses: opts.allowPrivateAddresses,
      httpBase: opts.handleResolverHttpBase,
      resolveTxt: opts.resolveTxt,
      lookup: opts.lookup,
    })
  }

  /**
   * The DID document, or null if the DID does not exist (404/410 from its directory or host).
   * Throws DidResolutionError for bad syntax, unsupported methods, fetch failures and bad documents.
   */
  async resolveDid(did: string, opts: ResolveDidOptions = {}): Promise<DidDocument | null> {
    const cached = await this.cache.get(did)
    if (cached) {
      const age = this.now() - cached.updatedAt
      if (opts.forceRefresh) {
        if (age < this.minForceRefreshIntervalMs) return cached.doc
      } else if (age < this.staleTtlMs) {
        return cached.doc
      } else if (age < this.maxTtlMs) {
        this.refreshInBackground(did)
        return cached.doc
      }
    }
    return this.refresh(did)
  }

  /** Fetches the document now (sharing an in-flight fetch of the same DID) and updates the cache. */
  private refresh(did: string): Promise<DidDocument | null> {
    const existing = this.inflight.get(did)
    if (existing) return existing
    const p = (async () => {
      const doc = await this.dids.fetch(did)
      if (doc) await this.cache.set(did, doc, this.now())
      else await this.cache.delete(did)
      return doc
    })()
    this.inflight.set(did, p)
    const clear = () => {
      if (this.inflight.get(did) === p) this.inflight.delete(did)
    }
    p.then(clear, clear)
    return p
  }

  private refreshInBackground(did: string): void {
    const p = this.refresh(did).catch((err) => this.onBackgroundError(err, did))
    this.background.add(p)
    void p.finally(() => this.background.delete(p))
  }

  /** Resolves when every background refresh started so far has finished (tests, shutdown). */
  async settled(): Promise<void> {
    while (this.background.size > 0) await Promise.allSettled([...this.background])
  }

  /** Atproto data of a DID; throws DidResolutionError('not-found') if the DID does not exist. */
  async resolveAtprotoData(did: string, opts: ResolveDidOptions = {}): Promise<AtprotoIdentity> {
    const doc = await this.resolveDid(did, opts)
    if (!doc) throw new DidResolutionError('not-found', `DID not found: ${did}`)
    return parseDidDocument(doc, did)
  }

  /** The DID a handle points to (DNS TXT, then HTTPS well-known); undefined if it does not resolve. */
  async resolveHandle(handle: string): Promise<string | undefined> {
    return this.handles.resolve(handle)
  }

  /**
   * Bidirectional check: the handle claimed by the DID document must resolve back to the DID.
   * Returns the (lowercased) handle, or 'handle.invalid'.
   */
  async verifyHandle(did: string, opts: ResolveDidOptions = {}): Promise<string | 'handle.invalid'> {
    let data: AtprotoIdentity
    try {
      data = await this.resolveAtprotoData(did, opts)
    } catch {
      return 'handle.invalid'
    }
    if (!data.handle) return 'handle.invalid'
    const resolved = await this.resolveHandle(data.handle)
    return resolved === did ? data.handle : 'handle.invalid'
  }

  /**
   * did:key of the DID's atproto signing key. Accepts a service-auth `iss` with a service fragment:
   * `<did>#atproto_labeler` selects the `#atproto_label` key, any other fragment `#atproto`.
   * Throws DidResolutionError if the DID does not resolve or has no usable key.
   */
  async getSigningKey(didOrIss: string, forceRefresh = false): Promise<string> {
    const hash = didOrIss.indexOf('#')
    const did = hash === -1 ? didOrIss : didOrIss.slice(0, hash)
    const fragment = hash === -1 ? '' : didOrIss.slice(hash + 1)
    const keyId = fragment === 'atproto_labeler' ? '#atproto_label' : '#atproto'
    const doc = await this.resolveDid(did, { forceRefresh })
    if (!doc) throw new DidResolutionError('not-found', `DID not found: ${did}`)
    const key = getVerificationKey(doc, keyId)
    if (!key) throw new DidResolutionError('no-signing-key', `${did} has no usable ${keyId} key`)
    return key
  }

  /** Drops the cached document (the next resolution fetches). */
  async invalidate(did: string): Promise<void> {
    await this.cache.delete(did)
  }
}
