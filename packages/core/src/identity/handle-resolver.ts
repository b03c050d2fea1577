/**
 * Handle → DID: DNS TXT `_atproto.<handle>` (`did=<DID>`) and HTTPS `/.well-known/atproto-did`.
 * Both run in parallel; a DNS answer wins.
 */
import { promises as dnsPromises } from 'node:dns'
import { isValidHandle } from '@atproto/syntax'
import { isValidDidSyntax } from './did-resolver.js'
import { safeFetch, type LookupAllFn } from './safe-fetch.js'

/** Like `dns.promises.resolveTxt`: each record as its character-string chunks. */
export type ResolveTxtFn = (name: string) => Promise<string[][]>

export interface HandleResolverOptions {
  timeoutMs?: number
  /** allow the well-known request to reach private addresses (development) */
  allowPrivateAddresses?: boolean
  /**
   * Where to send the well-known request instead of `https://<handle>` (development, e.g. PDSes that
   * serve handles on loopback). Either a base URL such as `http://127.0.0.1:2583` — the request goes to
   * `<base>/.well-known/atproto-did` with `Host: <handle>` — or a template containing `{handle}`, such
   * as `http://{handle}:2583`. A plain base URL is operator configuration and may be private.
   */
  httpBase?: string
  resolveTxt?: ResolveTxtFn
  lookup?: LookupAllFn
}

const MAX_WELL_KNOWN_BYTES = 4096

function withTimeout<T>(p: Promise<T>, ms: number, fallback: T): Promise<T> {
  return new Promise<T>((resolve) => {
    const timer = setTimeout(() => resolve(fallback), ms)
    p.then(
      (v) => {
        clearTimeout(timer)
        resolve(v)
      },
      () => {
        clearTimeout(timer)
        resolve(fallback)
      },
    )
  })
}

/** DIDs named by `did=` TXT values; undefined if none, or if they name more than one distinct DID. */
export function didFromTxtRecords(records: string[][]): string | undefined {
  const dids = new Set<string>()
  for (const chunks of records) {
    const value = chunks.join('')
    if (!value.startsWith('did=')) continue
    dids.add(value.slice('did='.length).trim())
  }
  if (dids.size !== 1) return undefined
  const did = [...dids][0]!
  return isValidDidSyntax(did) ? did : undefined
}

export class HandleResolver {
  private readonly timeoutMs: number
  private readonly allowPrivate: boolean
  private readonly httpBase: string | undefined
  private readonly resolveTxt: ResolveTxtFn
  private readonly lookup: LookupAllFn | undefined

  constructor(opts: HandleResolverOptions = {}) {
    this.timeoutMs = opts.timeoutMs ?? 5_000
    this.allowPrivate = opts.allowPrivateAddresses ?? false
    this.httpBase = opts.httpBase?.replace(/\/+$/, '')
    this.lookup = opts.lookup
    if (opts.resolveTxt) {
      this.resolveTxt = opts.resolveTxt
    } else {
      const resolver = new dnsPromises.Resolver({ timeout: this.timeoutMs, tries: 2 })
      this.resolveTxt = (name) => resolver.resolveTxt(name)
    }
  }

  /** The DID a handle points to, or undefined if it does not resolve (or resolves ambiguously). */
  async resolve(handle: string): Promise<string | undefined> {
    const normalized = handle.toLowerCase()
    if (!isValidHandle(normalized)) return undefined
    const dnsResult = this.resolveDns(normalized)
    const httpResult = this.resolveHttp(normalized)
    const fromDns = await dnsResult
    if (fromDns !== undefined) {
      void httpResult
      return fromDns
    }
    return httpResult
  }

  async resolveDns(handle: string): Promise<string | undefined> {
    const records = await withTimeout(this.resolveTxt(`_atproto.${handle}`), this.timeoutMs, [] as string[][])
    return didFromTxtRecords(records)
  }

  async resolveHttp(handle: string): Promise<string | undefined> {
    let url: string
    let headers: Record<string, string> = { accept: 'text/plain' }
    let allowPrivate = this.allowPrivate
    if (this.httpBase === undefined) {
      url = `https://${handle}/.well-known/atproto-did`
    } else if (this.httpBase.includes('{handle}')) {
      url = `${this.httpBase.replaceAll('{handle}', handle)}/.well-known/atproto-did`
    } else {
      url = `${this.httpBase}/.well-known/atproto-did`
      headers = { ...headers, host: handle }
      allowPrivate = true
    }
    try {
      const res = await safeFetch(url, {
        timeoutMs: this.timeoutMs,
        maxBytes: MAX_WELL_KNOWN_BYTES,
        allowPrivateAddresses: allowPrivate,
        headers,
        lookup: this.lookup,
      })
      if (!res.ok) return undefined
      const did = res.text().trim()
      return isValidDidSyntax(did) ? did : undefined
    } catch {
      return undefined
    }
  }
}
