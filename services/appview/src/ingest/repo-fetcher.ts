/**
 * RepoFetcher: every com.atproto.sync.getRepo of the AppView (resyncs and backfill) goes through here,
 * off the event path. Limits: a global and a per-host concurrency, a per-host budget (how many fetches
 * may wait for a host; a host whose fetches keep failing is paused for a while), a byte-rate floor
 * (a response slower than the floor over a whole window is aborted), a deadline and a size cap.
 */
import { SafeFetchError, safeFetch } from '@stratos/core/identity'

export interface RepoFetcherOptions {
  /** fetches in flight over all hosts (default 16) */
  concurrency?: number
  /** fetches in flight per host (default 4) */
  hostConcurrency?: number
  /** fetches allowed to wait for one host; more are refused at once (default 100) */
  hostQueueLimit?: number
  /** abort a response that brings fewer bytes/s than this over a window (default 8192; 0 = off) */
  minBytesPerSec?: number
  /** the window of the byte-rate floor (default 10 s) */
  rateWindowMs?: number
  /** whole-fetch deadline (default 120 s) */
  timeoutMs?: number
  /** response size cap (default 512 MiB) */
  maxBytes?: number
  /** failures in a row after which a host is paused (default 5) */
  hostFailureLimit?: number
  /** how long a failing host is paused (default 60 s) */
  hostPauseMs?: number
  allowPrivateAddresses?: boolean
  /** reuse connections to a host between fetches (safeFetch's keepAlive: each made through the address check; default true) */
  keepAlive?: boolean
}

export type RepoFetchErrorCode = 'host-busy' | 'host-paused' | 'too-slow' | 'status' | 'fetch' | 'stopped'

export class RepoFetchError extends Error {
  override name = 'RepoFetchError'
  constructor(
    readonly code: RepoFetchErrorCode,
    message: string,
    /** worth retrying later (network errors, 5xx, 429) */
    readonly retryable: boolean,
    readonly status?: number,
  ) {
    super(message)
  }
}

class Semaphore {
  active = 0
  readonly waiting: (() => void)[] = []
  constructor(readonly limit: number) {}
  async acquire(): Promise<void> {
    if (this.active < this.limit) {
      this.active++
      return
    }
    await new Promise<void>((resolve) => this.waiting.push(resolve))
  }
  release(): void {
    const next = this.waiting.shift()
    if (next) next()
    else this.active--
  }
}

interface HostState {
  slots: Semaphore
  failuresInARow: number
  pausedUntil: number
  fetched: number
  failed: number
  bytes: number
}

export interface HostStats {
  host: string
  active: number
  waiting: number
  fetched: number
  failed: number
  bytes: number
  pausedUntil: string | null
}

function hostOf(endpoint: string): string {
  try {
    return new URL(endpoint).host.toLowerCase()
  } catch {
    return endpoint
  }
}

export interface FetchQueueOptions {
  /** 'refuse' (default): host-busy when the host's queue is full; 'wait': wait for a slot regardless */
  queue?: 'refuse' | 'wait'
}

export class RepoFetcher {
  private readonly global: Semaphore
  private readonly hosts = new Map<string, HostState>()
  private readonly opts: Required<RepoFetcherOptions>
  private stopController = new AbortController()
  readonly stats = { fetched: 0, failed: 0, tooSlow: 0, refused: 0, bytes: 0 }

  constructor(opts: RepoFetcherOptions = {}) {
    this.opts = {
      concurrency: opts.concurrency ?? 16,
      hostConcurrency: opts.hostConcurrency ?? 4,
      hostQueueLimit: opts.hostQueueLimit ?? 100,
      minBytesPerSec: opts.minBytesPerSec ?? 8192,
      rateWindowMs: opts.rateWindowMs ?? 10_000,
      timeoutMs: opts.timeoutMs ?? 120_000,
      maxBytes: opts.maxBytes ?? 512 * 1024 * 1024,
      hostFailureLimit: opts.hostFailureLimit ?? 5,
      hostPauseMs: opts.hostPauseMs ?? 60_000,
      allowPrivateAddresses: opts.allowPrivateAddresses ?? false,
      keepAlive: opts.keepAlive ?? true,
    }
    this.global = new Semaphore(this.opts.concurrency)
  }

  /** Aborts the fetches in flight (the fetcher stays usable for new ones). */
  abortAll(): void {
    this.stopController.abort()
    this.stopController = new AbortController()
  }

  private host(host: string): HostState {
    let h = this.hosts.get(host)
    if (!h) {
      h = { slots: new Semaphore(this.opts.hostConcurrency), failuresInARow: 0, pausedUntil: 0, fetched: 0, failed: 0, bytes: 0 }
      this.hosts.set(host, h)
    }
    return h
  }

  hostStats(): HostStats[] {
    return [...this.hosts.entries()].map(([host, h]) => ({
      host,
      active: h.slots.active,
      waiting: h.slots.waiting.length,
      fetched: h.fetched,
      failed: h.failed,
      bytes: h.bytes,
      pausedUntil: h.pausedUntil > Date.now() ? new Date(h.pausedUntil).toISOString() : null,
    }))
  }

  /**
   * GET {pdsEndpoint}/xrpc/com.atproto.sync.getRepo?did=… within the limits; the CAR bytes. `queue: 'wait'`
   * waits for a slot on the host however many fetches already wait (a caller that bounds its own fetches in
   * flight, such as the network backfill); by default a fetch is refused (host-busy) when the host's queue is full.
   */
  async getRepo(pdsEndpoint: string, did: string, opts: FetchQueueOptions = {}): Promise<Uint8Array> {
    const url = `${pdsEndpoint.replace(/\/+$/, '')}/xrpc/com.atproto.sync.getRepo?did=${encodeURIComponent(did)}`
    return this.fetchBytes(url, { accept: 'application/vnd.ipld.car' }, opts)
  }

  /** Any GET on a host within the same limits (listRepos pages use it too). */
  async fetchBytes(url: string, headers: Record<string, string> = {}, opts: FetchQueueOptions = {}): Promise<Uint8Array> {
    const name = hostOf(url)
    const h = this.host(name)
    if (h.pausedUntil > Date.now()) {
      this.stats.refused++
      throw new RepoFetchError('host-paused', `${name} is paused after ${this.opts.hostFailureLimit} failed fetches in a row`, true)
    }
    if (opts.queue !== 'wait' && h.slots.active >= h.slots.limit && h.slots.waiting.length >= this.opts.hostQueueLimit) {
      this.stats.refused++
      throw new RepoFetchError('host-busy', `${name} has ${h.slots.waiting.length} fetches waiting already`, true)
    }
    await h.slots.acquire()
    try {
      await this.global.acquire()
      try {
        const bytes = await this.fetchOnce(url, headers, name)
        h.failuresInARow = 0
        h.fetched++
        h.bytes += bytes.byteLength
        this.stats.fetched++
        this.stats.bytes += bytes.byteLength
        return bytes
      } catch (err) {
        h.failed++
        this.stats.failed++
        if (!(err instanceof RepoFetchError && err.code === 'status' && err.status !== undefined && err.status < 500 && err.status !== 429)) {
          // a host that answers "not found" is healthy; slow, broken or overloaded ones count
          h.failuresInARow++
          if (h.failuresInARow >= this.opts.hostFailureLimit) {
            h.pausedUntil = Date.now() + this.opts.hostPauseMs
            h.failuresInARow = 0
          }
        }
        throw err
      } finally {
        this.global.release()
      }
    } finally {
      h.slots.release()
    }
  }

  private async fetchOnce(url: string, headers: Record<string, string>, host: string): Promise<Uint8Array> {
    const ctl = new AbortController()
    let received = 0
    let windowStart = Date.now()
    let windowBytes = 0
    let tooSlow = false
    const floor = this.opts.minBytesPerSec
    const windowMs = this.opts.rateWindowMs
    // the floor is checked once per window, time to first byte included
    const timer =
      floor > 0
        ? setInterval(() => {
            const elapsed = Date.now() - windowStart
            if (elapsed >= windowMs && ((received - windowBytes) * 1000) / elapsed < floor) {
              tooSlow = true
              ctl.abort()
            }
            windowStart = Date.now()
            windowBytes = received
          }, windowMs)
        : null
    timer?.unref()
    const stopped = this.stopController.signal
    try {
      const res = await safeFetch(url, {
        timeoutMs: this.opts.timeoutMs,
        maxBytes: this.opts.maxBytes,
        allowPrivateAddresses: this.opts.allowPrivateAddresses,
        keepAlive: this.opts.keepAlive,
        headers,
        signal: AbortSignal.any([ctl.signal, stopped]),
        onData: (n) => {
          received = n
        },
      })
      if (!res.ok) {
        const retryable = res.status >= 500 || res.status === 429
        throw new RepoFetchError('status', `${host} answered ${res.status}: ${res.text().slice(0, 200)}`, retryable, res.status)
      }
      return res.body
    } catch (err) {
      if (err instanceof RepoFetchError) throw err
      if (tooSlow) {
        this.stats.tooSlow++
        throw new RepoFetchError('too-slow', `${host} sent less than ${floor} bytes/s over ${windowMs} ms; aborted`, true)
      }
      if (stopped.aborted) throw new RepoFetchError('stopped', 'the fetch was stopped', false)
      const code = err instanceof SafeFetchError ? err.code : 'network'
      const retryable = code === 'network' || code === 'timeout'
      throw new RepoFetchError('fetch', (err as Error).message, retryable)
    } finally {
      if (timer) clearInterval(timer)
    }
  }
}
