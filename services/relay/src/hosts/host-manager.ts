/**
 * Which hosts the relay follows: public crawl requests (liveness probe, a daily cap on new hosts, banned
 * domains refused), hosts added by the operator, bans and per-host limits.
 */
import { safeFetch } from '@stratos/core/identity'
import { ForbiddenError, InvalidRequestError, RateLimitExceededError, UpstreamFailureError } from '@stratos/core/xrpc'
import type { HostLimits, RelayConfig } from '../config.js'
import type { Logger } from '../logger.js'
import { effectiveLimits, type HostRateLimiter } from './limits.js'
import type { Host, HostStore } from './host-store.js'
import { InvalidHostnameError, hostBaseUrl, matchesDomain, parseHostname, type ParsedHost } from './hostname.js'
import type { Slurper } from './slurper.js'

export interface HostManagerOptions {
  store: HostStore
  slurper: Slurper
  limiter: HostRateLimiter
  config: Pick<
    RelayConfig,
    'devMode' | 'bannedDomains' | 'trustedDomains' | 'newHostsPerDay' | 'defaultHostLimits' | 'trustedHostLimits'
  >
  log: Logger
  /** replaces the describeServer probe (tests) */
  probe?: (baseUrl: string) => Promise<void>
  /** called once for each host the relay starts following for the first time */
  onNewHost?: (host: Host) => void
}

const DAY_MS = 24 * 3600_000

export class HostBannedError extends InvalidRequestError {
  constructor(hostname: string) {
    super(`${hostname} is banned from this relay`, 'HostBanned')
  }
}

export class HostManager {
  constructor(private readonly o: HostManagerOptions) {}

  parse(input: string): ParsedHost {
    try {
      return parseHostname(input, this.o.config.devMode)
    } catch (err) {
      if (err instanceof InvalidHostnameError) throw new InvalidRequestError(err.message)
      throw err
    }
  }

  isTrusted(host: Pick<Host, 'hostname' | 'trusted'>): boolean {
    return host.trusted || matchesDomain(host.hostname, this.o.config.trustedDomains)
  }

  limitsFor(host: Host): HostLimits {
    return effectiveLimits(host.limits, this.isTrusted(host), this.o.config.defaultHostLimits, this.o.config.trustedHostLimits)
  }

  isBannedDomain(hostname: string): boolean {
    return matchesDomain(hostname, this.o.config.bannedDomains)
  }

  /** Probes `GET /xrpc/com.atproto.server.describeServer`: the host must answer with a JSON object naming its DID. */
  async probe(parsed: ParsedHost): Promise<void> {
    const base = hostBaseUrl(parsed.hostname, parsed.ssl)
    if (this.o.probe) return this.o.probe(base)
    let res
    try {
      res = await safeFetch(`${base}/xrpc/com.atproto.server.describeServer`, {
        timeoutMs: 10_000,
        maxBytes: 256 * 1024,
        allowPrivateAddresses: this.o.config.devMode,
        headers: { accept: 'application/json' },
      })
    } catch (err) {
      // the detail (resolved addresses, socket errors) stays in the log; the caller gets a generic reason
      this.o.log.info({ host: parsed.hostname, err: (err as Error).message, detail: (err as { detail?: string }).detail }, 'host probe failed')
      const refused = (err as { code?: string }).code === 'forbidden-address'
      throw new UpstreamFailureError(`could not reach ${parsed.hostname}${refused ? ': not a public address' : ''}`)
    }
    if (!res.ok) throw new UpstreamFailureError(`${parsed.hostname} answered describeServer with HTTP ${res.status}`)
    let body: unknown
    try {
      body = res.json()
    } catch {
      throw new UpstreamFailureError(`${parsed.hostname} answered describeServer with something that is not JSON`)
    }
    if (typeof body !== 'object' || body === null || typeof (body as { did?: unknown }).did !== 'string') {
      throw new UpstreamFailureError(`${parsed.hostname} did not describe itself as a PDS (no did in describeServer)`)
    }
  }

  /**
   * com.atproto.sync.requestCrawl: subscribe to a host that asks for it. New hosts must answer the liveness
   * probe and fit in the daily cap (unless `admin`); banned hosts and domains are refused; a known idle or
   * offline host is resubscribed.
   */
  async requestCrawl(input: string, opts: { admin?: boolean } = {}): Promise<Host> {
    const parsed = this.parse(input)
    if (this.isBannedDomain(parsed.hostname)) throw new HostBannedError(parsed.hostname)
    const existing = this.o.store.get(parsed.hostname)
    if (existing) {
      if (existing.status === 'banned') throw new HostBannedError(parsed.hostname)
      if (this.o.slurper.isSubscribed(existing.id)) return this.current(existing)
      if (existing.status === 'throttled' && !opts.admin) return this.current(existing)
      await this.probe({ hostname: existing.hostname, ssl: existing.ssl })
      this.o.slurper.subscribe(existing)
      return this.current(existing)
    }
    if (!opts.admin) {
      const recent = this.o.store.crawledSince(Date.now() - DAY_MS)
      if (recent >= this.o.config.newHostsPerDay) {
        throw new RateLimitExceededError('this relay is not taking more new hosts today; try again later', 3600)
      }
    }
    await this.probe(parsed)
    return this.add(parsed, opts.admin ? 'admin' : 'crawl', false)
  }

  /** Admin: follow a host (no probe, no daily cap). */
  async addHost(input: string, opts: { trusted?: boolean } = {}): Promise<Host> {
    const parsed = this.parse(input)
    if (this.isBannedDomain(parsed.hostname)) throw new HostBannedError(parsed.hostname)
    const existing = this.o.store.get(parsed.hostname)
    if (existing) {
      if (existing.status === 'banned') throw new HostBannedError(parsed.hostname)
      if (opts.trusted !== undefined && opts.trusted !== existing.trusted) this.o.store.setTrusted(existing.id, opts.trusted)
      if (existing.ssl !== parsed.ssl) this.o.store.setSsl(existing.id, parsed.ssl)
      const host = this.o.store.getById(existing.id)!
      this.o.slurper.subscribe(host)
      return this.current(host)
    }
    return this.add(parsed, 'admin', opts.trusted ?? false)
  }

  private add(parsed: ParsedHost, addedBy: 'crawl' | 'admin' | 'config', trusted: boolean): Host {
    const host = this.o.store.create({ hostname: parsed.hostname, ssl: parsed.ssl, status: 'active', trusted, addedBy })
    this.o.log.info({ host: host.hostname, addedBy }, 'new host')
    this.o.slurper.subscribe(host)
    this.o.onNewHost?.(host)
    return this.current(host)
  }

  /** Hosts from configuration (RELAY_CRAWL_HOSTS): followed like admin-added hosts. */
  async addConfiguredHosts(inputs: string[]): Promise<void> {
    for (const input of inputs) {
      try {
        const parsed = this.parse(input)
        const existing = this.o.store.get(parsed.hostname)
        if (existing) {
          if (existing.status === 'idle' || existing.status === 'offline') this.o.slurper.subscribe(existing)
          continue
        }
        if (this.isBannedDomain(parsed.hostname)) continue
        this.add(parsed, 'config', false)
      } catch (err) {
        this.o.log.warn({ host: input, err: (err as Error).message }, 'configured host refused')
      }
    }
  }

  /** Admin: ban a host (known or not): disconnect it and refuse it from now on. */
  async banHost(input: string): Promise<Host> {
    const parsed = this.parse(input)
    let host = this.o.store.get(parsed.hostname)
    if (!host) {
      host = this.o.store.create({ hostname: parsed.hostname, ssl: parsed.ssl, status: 'banned', trusted: false, addedBy: 'admin' })
    }
    await this.o.slurper.unsubscribe(host.id, 'banned')
    this.o.log.warn({ host: host.hostname }, 'host banned')
    return this.current(host)
  }

  /** Admin: lift a ban and follow the host again. */
  async unbanHost(input: string): Promise<Host> {
    const parsed = this.parse(input)
    const host = this.o.store.get(parsed.hostname)
    if (!host) throw new InvalidRequestError(`unknown host: ${parsed.hostname}`, 'HostNotFound')
    if (this.isBannedDomain(host.hostname)) {
      throw new ForbiddenError(`${host.hostname} is under a domain banned by configuration (RELAY_BANNED_DOMAINS)`)
    }
    if (host.status !== 'banned') return this.current(host)
    this.o.store.setStatus(host.id, 'idle')
    this.o.slurper.subscribe({ ...host, status: 'idle' })
    return this.current(host)
  }

  /** Admin: per-host limits (null = unlimited, undefined = default) and the trusted flag. */
  async updateLimits(input: string, limits: Partial<HostLimits>, opts: { trusted?: boolean; reset?: boolean } = {}): Promise<Host> {
    const parsed = this.parse(input)
    const host = this.o.store.get(parsed.hostname)
    if (!host) throw new InvalidRequestError(`unknown host: ${parsed.hostname}`, 'HostNotFound')
    const trusted = opts.trusted
    const merged: Partial<HostLimits> = { ...(opts.reset ? {} : (host.limits ?? {})), ...limits }
    for (const k of Object.keys(merged) as (keyof HostLimits)[]) if (merged[k] === undefined) delete merged[k]
    this.o.store.setLimits(host.id, merged)
    if (trusted !== undefined) this.o.store.setTrusted(host.id, trusted)
    const updated = this.o.store.getById(host.id)!
    if (updated.status === 'throttled') {
      // new limits may let it go on now
      this.o.limiter.forget(updated.id)
      this.o.slurper.subscribe(updated)
    } else if (this.o.slurper.isSubscribed(updated.id)) {
      this.o.slurper.subscribe(updated) // refreshes the limits the connection uses
    }
    return this.current(updated)
  }

  /** The stored host with the live status. */
  current(host: Host): Host {
    return this.o.store.getById(host.id) ?? host
  }
}
