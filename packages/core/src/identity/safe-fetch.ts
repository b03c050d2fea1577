/**
 * Outbound HTTP(S) for URLs that come from the network (did:web hosts, handle domains, PDS endpoints).
 *
 * Every request has a deadline, a response size limit and a redirect limit, and — unless the caller
 * allows it (a development setting) — refuses to connect to non-public addresses. The address check
 * runs inside the socket's DNS lookup, so the address that is checked is the address that is dialled
 * (no window for DNS rebinding between a check and the connection); IP-literal hosts are checked
 * before dialling.
 */
import dns from 'node:dns'
import http from 'node:http'
import https from 'node:https'
import net from 'node:net'

export type SafeFetchErrorCode =
  | 'bad-url'
  | 'forbidden-address'
  | 'timeout'
  | 'aborted'
  | 'too-large'
  | 'too-many-redirects'
  | 'network'

/**
 * A refused or failed fetch. Messages name the host asked for, never the addresses it resolved to nor
 * the socket error's text (they may be internal addresses and are answered to clients); `detail` keeps
 * them for logs.
 */
export class SafeFetchError extends Error {
  override name = 'SafeFetchError'
  /** for logs only: resolved address, low-level error text */
  detail?: string
  constructor(
    readonly code: SafeFetchErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options)
  }
}

export interface LookupAddress {
  address: string
  family: number
}

/** Resolves a hostname to every address it has (like `dns.lookup(host, { all: true })`). */
export type LookupAllFn = (hostname: string) => Promise<LookupAddress[]>

export interface SafeFetchOptions {
  method?: string
  headers?: Record<string, string>
  body?: Uint8Array | string
  /** whole-request deadline, redirects and body included (default 10 s) */
  timeoutMs?: number
  /** response body limit in bytes (default 1 MiB) */
  maxBytes?: number
  /** default 3 */
  maxRedirects?: number
  /** allow loopback / private / link-local destinations (development only) */
  allowPrivateAddresses?: boolean
  signal?: AbortSignal
  /** replaces dns.lookup (tests) */
  lookup?: LookupAllFn
  /** called with the body bytes received so far, after every chunk (rate floors, progress) */
  onData?: (bytesSoFar: number) => void
  /**
   * Receives the body chunk by chunk instead of buffering it (the response's `body` is then empty): for
   * large bodies that go to disk or are hashed on the way. A throw aborts the request with that error.
   */
  onChunk?: (chunk: Buffer) => void
  /**
   * Reuse connections (HTTP keep-alive) between requests with the same scheme, host, port, private-address
   * setting and resolver (`lookup`). Each pooled connection was dialled through the same address check as
   * a fresh one (its address checked when it was made), so a reused one reaches an address the check let
   * through under the same rule; a connection is pooled only after a response read to its end (a refused,
   * oversized, timed-out, aborted or redirected response closes its connection). Default false: a fresh
   * connection per request.
   */
  keepAlive?: boolean
}

export interface SafeFetchResponse {
  /** final URL after redirects */
  url: string
  status: number
  ok: boolean
  headers: Headers
  body: Uint8Array
  text(): string
  json<T = unknown>(): T
}

export const DEFAULT_FETCH_TIMEOUT_MS = 10_000
export const DEFAULT_FETCH_MAX_BYTES = 1024 * 1024
export const DEFAULT_MAX_REDIRECTS = 3

// ---------------------------------------------------------------------------------------------
// Address classification

function parseIpv4(ip: string): number[] | null {
  if (!net.isIPv4(ip)) return null
  return ip.split('.').map((p) => Number(p))
}

/** 16 bytes of an IPv6 address (zone id ignored), or null. */
function parseIpv6(input: string): number[] | null {
  let ip = input
  const zone = ip.indexOf('%')
  if (zone !== -1) ip = ip.slice(0, zone)
  if (!net.isIPv6(ip)) return null
  const lastColon = ip.lastIndexOf(':')
  const lastPart = ip.slice(lastColon + 1)
  if (lastPart.includes('.')) {
    // trailing dotted quad → two hex groups
    const v4 = parseIpv4(lastPart)
    if (!v4) return null
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16)
    const lo = ((v4[2]! << 8) | v4[3]!).toString(16)
    ip = `${ip.slice(0, lastColon + 1)}${hi}:${lo}`
  }
  let groups: string[]
  const dbl = ip.indexOf('::')
  if (dbl === -1) {
    groups = ip.split(':')
  } else {
    const head = ip.slice(0, dbl).split(':').filter((g) => g.length > 0)
    const tail = ip.slice(dbl + 2).split(':').filter((g) => g.length > 0)
    const fill = 8 - head.length - tail.length
    if (fill < 0) return null
    groups = [...head, ...Array<string>(fill).fill('0'), ...tail]
  }
  if (groups.length !== 8) return null
  const bytes: number[] = []
  for (const g of groups) {
    const v = parseInt(g, 16)
    if (!Number.isFinite(v)) return null
    bytes.push((v >> 8) & 0xff, v & 0xff)
  }
  return bytes
}

function v4InRange(b: number[], prefix: number[], bits: number): boolean {
  const addr = ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0
  const net_ = ((prefix[0]! << 24) | (prefix[1]! << 16) | (prefix[2]! << 8) | prefix[3]!) >>> 0
  if (bits === 0) return true
  const mask = bits === 32 ? 0xffffffff : (~((1 << (32 - bits)) - 1)) >>> 0
  return (addr & mask) >>> 0 === (net_ & mask) >>> 0
}

const V4_BLOCKED: Array<[number[], number]> = [
  [[0, 0, 0, 0], 8], // "this network", includes 0.0.0.0
  [[10, 0, 0, 0], 8], // private
  [[100, 64, 0, 0], 10], // carrier-grade NAT (also 100.100.100.200 cloud metadata)
  [[127, 0, 0, 0], 8], // loopback
  [[169, 254, 0, 0], 16], // link-local, 169.254.169.254 cloud metadata
  [[172, 16, 0, 0], 12], // private
  [[192, 0, 0, 0], 24], // IETF protocol assignments
  [[192, 0, 2, 0], 24], // TEST-NET-1
  [[192, 88, 99, 0], 24], // 6to4 relay anycast
  [[192, 168, 0, 0], 16], // private
  [[198, 18, 0, 0], 15], // benchmarking
  [[198, 51, 100, 0], 24], // TEST-NET-2
  [[203, 0, 113, 0], 24], // TEST-NET-3
  [[224, 0, 0, 0], 4], // multicast
  [[240, 0, 0, 0], 4], // reserved, broadcast
]

function isPublicIpv4(b: number[]): boolean {
  return !V4_BLOCKED.some(([prefix, bits]) => v4InRange(b, prefix, bits))
}

function v6HasPrefix(b: number[], prefix: number[], bits: number): boolean {
  for (let i = 0; i < bits; i += 8) {
    const remaining = Math.min(8, bits - i)
    const mask = (0xff << (8 - remaining)) & 0xff
    if ((b[i / 8]! & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false
  }
  return true
}

function isPublicIpv6(b: number[]): boolean {
  // IPv4-mapped ::ffff:a.b.c.d → judge the IPv4 address
  if (v6HasPrefix(b, [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 96)) return isPublicIpv4(b.slice(12))
  // NAT64 well-known prefix 64:ff9b::/96 → judge the embedded IPv4 address
  if (v6HasPrefix(b, [0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96)) return isPublicIpv4(b.slice(12))
  // 6to4 2002::/16 embeds an IPv4 address in bytes 2..5
  if (v6HasPrefix(b, [0x20, 0x02], 16)) return isPublicIpv4(b.slice(2, 6))
  const blocked: Array<[number[], number]> = [
    [[0], 8], // ::, ::1, IPv4-compatible and other reserved
    [[0, 0x64, 0xff, 0x9b, 0, 1], 48], // local-use NAT64
    [[0x01, 0x00, 0, 0, 0, 0, 0, 0], 64], // discard-only
    [[0x20, 0x01, 0x00], 23], // IETF protocol assignments incl. Teredo
    [[0x20, 0x01, 0x0d, 0xb8], 32], // documentation
    [[0xfc], 7], // unique local (fd00:ec2::254 metadata included)
    [[0xfe, 0x80], 10], // link-local
    [[0xfe, 0xc0], 10], // site-local (deprecated)
    [[0xff], 8], // multicast
  ]
  return !blocked.some(([prefix, bits]) => v6HasPrefix(b, prefix, bits))
}

/**
 * True for a globally routable unicast address. False for loopback, private (RFC 1918), CGNAT,
 * link-local, unique-local, multicast, documentation/benchmark ranges, 0.0.0.0, ::, ::1 and cloud
 * metadata addresses — and for anything that is not an IP address.
 */
export function isPublicAddress(ip: string): boolean {
  const bare = ip.startsWith('[') && ip.endsWith(']') ? ip.slice(1, -1) : ip
  const v4 = parseIpv4(bare)
  if (v4) return isPublicIpv4(v4)
  const v6 = parseIpv6(bare)
  if (v6) return isPublicIpv6(v6)
  return false
}

// ---------------------------------------------------------------------------------------------
// Fetch

const defaultLookupAll: LookupAllFn = (hostname) =>
  new Promise((resolve, reject) => {
    dns.lookup(hostname, { all: true, verbatim: true }, (err, addresses) => {
      if (err) reject(err)
      else resolve(addresses)
    })
  })

/**
 * A `lookup` for node:net / http / ws connections that refuses names resolving to non-public addresses
 * (checked at connect time, so a name that resolved publicly when probed cannot be rebound to an internal
 * address later). `lookup` replaces DNS (tests).
 */
export function publicOnlyLookup(opts: { lookup?: LookupAllFn; allowPrivateAddresses?: boolean } = {}): net.LookupFunction {
  return makeLookup(opts.lookup ?? defaultLookupAll, opts.allowPrivateAddresses ?? false, () => undefined) as unknown as net.LookupFunction
}

type NodeLookupCallback = (err: NodeJS.ErrnoException | null, address: string | LookupAddress[], family?: number) => void

function makeLookup(lookupAll: LookupAllFn, allowPrivate: boolean, onForbidden: (e: SafeFetchError) => void) {
  return (hostname: string, options: { family?: number | string; all?: boolean }, callback: NodeLookupCallback): void => {
    lookupAll(hostname)
      .then((addresses) => {
        if (addresses.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`no addresses for ${hostname}`)
          err.code = 'ENOTFOUND'
          throw err
        }
        if (!allowPrivate) {
          const bad = addresses.find((a) => !isPublicAddress(a.address))
          if (bad) {
            const err = new SafeFetchError('forbidden-address', `refusing to connect to ${hostname}: not a public address`)
            err.detail = `resolved to ${bad.address}`
            onForbidden(err)
            throw err
          }
        }
        const family = options.family === 'IPv4' ? 4 : options.family === 'IPv6' ? 6 : Number(options.family ?? 0)
        const usable = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses
        if (usable.length === 0) {
          const err: NodeJS.ErrnoException = new Error(`no IPv${family} address for ${hostname}`)
          err.code = 'ENOTFOUND'
          throw err
        }
        if (options.all) callback(null, usable)
        else callback(null, usable[0]!.address, usable[0]!.family)
      })
      .catch((err: NodeJS.ErrnoException) => callback(err, ''))
  }
}

// ---------------------------------------------------------------------------------------------
// Keep-alive

/** how long an idle pooled connection is kept (below the usual servers' 5 s keep-alive timeout) */
const KEEP_ALIVE_IDLE_MS = 4_000
/** idle pooled connections per host and port, at most */
const KEEP_ALIVE_MAX_FREE = 32

/**
 * Keep-alive agents by resolver, then scheme and private-address setting: a connection is only ever
 * reused by a request that would have dialled it through the same check (a connection made while private
 * addresses were allowed never serves a request that refuses them, nor one made with another resolver).
 */
const keepAliveAgents = new WeakMap<LookupAllFn, Map<string, http.Agent>>()

function keepAliveAgent(protocol: string, allowPrivate: boolean, lookupAll: LookupAllFn): http.Agent {
  let agents = keepAliveAgents.get(lookupAll)
  if (!agents) {
    agents = new Map()
    keepAliveAgents.set(lookupAll, agents)
  }
  const key = `${protocol}${allowPrivate ? 'private' : 'public'}`
  let agent = agents.get(key)
  if (!agent) {
    const opts: http.AgentOptions = { keepAlive: true, maxFreeSockets: KEEP_ALIVE_MAX_FREE, timeout: KEEP_ALIVE_IDLE_MS, scheduling: 'lifo' }
    agent = protocol === 'https:' ? new https.Agent(opts) : new http.Agent(opts)
    agents.set(key, agent)
  }
  return agent
}

/** A request that failed on a pooled connection before any response (the server had closed it meanwhile). */
class StaleConnectionError extends Error {}

interface HopResult {
  status: number
  headers: http.IncomingHttpHeaders
  rawHeaders: string[]
  body: Uint8Array | null
}

function toHeaders(raw: string[]): Headers {
  const headers = new Headers()
  for (let i = 0; i + 1 < raw.length; i += 2) {
    try {
      headers.append(raw[i]!, raw[i + 1]!)
    } catch {
      // header values the Fetch API refuses are dropped
    }
  }
  return headers
}

function isRedirect(status: number): boolean {
  return status === 301 || status === 302 || status === 303 || status === 307 || status === 308
}

function requestHop(
  url: URL,
  method: string,
  headers: Record<string, string>,
  body: Uint8Array | string | undefined,
  signal: AbortSignal,
  maxBytes: number,
  allowPrivate: boolean,
  lookupAll: LookupAllFn,
  onData: ((bytesSoFar: number) => void) | undefined,
  onChunk: ((chunk: Buffer) => void) | undefined,
  agent: http.Agent | false,
): Promise<HopResult> {
  return new Promise<HopResult>((resolve, reject) => {
    let forbidden: SafeFetchError | null = null
    let settled = false
    let responded = false
    const fail = (err: unknown) => {
      if (settled) return
      settled = true
      reject(err)
    }
    const lib = url.protocol === 'https:' ? https : http
    const req = lib.request(url, {
      method,
      headers,
      signal,
      // (a new connection, pooled or not, is dialled through this check)
      lookup: makeLookup(lookupAll, allowPrivate, (e) => (forbidden = e)) as unknown as net.LookupFunction,
      // false: a fresh connection per request; a keep-alive agent: see keepAliveAgent
      agent,
    })
    req.on('error', (err) => {
      // a pooled connection the server closed while it was idle: the caller tries once on a new one (reads only)
      if (!forbidden && !responded && req.reusedSocket && !signal.aborted && (method === 'GET' || method === 'HEAD')) fail(new StaleConnectionError(err.message))
      else fail(forbidden ?? err)
    })
    req.on('response', (res) => {
      responded = true
      const status = res.statusCode ?? 0
      if (isRedirect(status) && res.headers.location) {
        // (its body is not read: the connection is closed, not pooled)
        res.destroy()
        settled = true
        resolve({ status, headers: res.headers, rawHeaders: res.rawHeaders, body: null })
        return
      }
      const declared = Number(res.headers['content-length'])
      if (Number.isFinite(declared) && declared > maxBytes) {
        fail(new SafeFetchError('too-large', `response from ${url.host} is ${declared} bytes (limit ${maxBytes})`))
        res.destroy()
        req.destroy()
        return
      }
      const chunks: Buffer[] = []
      let total = 0
      res.on('data', (chunk: Buffer) => {
        if (settled) return
        total += chunk.length
        if (total > maxBytes) {
          fail(new SafeFetchError('too-large', `response from ${url.host} exceeds ${maxBytes} bytes`))
          res.destroy()
          req.destroy()
          return
        }
        if (onChunk) {
          try {
            onChunk(chunk)
          } catch (err) {
            fail(err)
            res.destroy()
            req.destroy()
            return
          }
        } else {
          chunks.push(chunk)
        }
        onData?.(total)
      })
      res.on('end', () => {
        if (settled) return
        settled = true
        const buf = Buffer.concat(chunks)
        resolve({
          status,
          headers: res.headers,
          rawHeaders: res.rawHeaders,
          body: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength),
        })
      })
      res.on('error', (err) => fail(err))
      res.on('aborted', () => fail(new SafeFetchError('network', `connection to ${url.host} closed mid-response`)))
    })
    if (body !== undefined) req.write(body)
    req.end()
  })
}

/**
 * Fetches `input` with a deadline, a response size limit, a redirect limit and (unless
 * `allowPrivateAddresses`) a refusal to reach non-public addresses. The body is read in full
 * (never more than `maxBytes`). Throws SafeFetchError; HTTP error statuses are returned, not thrown.
 */
export async function safeFetch(input: string | URL, opts: SafeFetchOptions = {}): Promise<SafeFetchResponse> {
  const timeoutMs = opts.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS
  const maxBytes = opts.maxBytes ?? DEFAULT_FETCH_MAX_BYTES
  const maxRedirects = opts.maxRedirects ?? DEFAULT_MAX_REDIRECTS
  const allowPrivate = opts.allowPrivateAddresses ?? false
  const lookupAll = opts.lookup ?? defaultLookupAll

  let url: URL
  try {
    url = new URL(input)
  } catch {
    throw new SafeFetchError('bad-url', `invalid URL: ${String(input).slice(0, 200)}`)
  }

  const timeoutSignal = AbortSignal.timeout(timeoutMs)
  const signal = opts.signal ? AbortSignal.any([opts.signal, timeoutSignal]) : timeoutSignal

  let method = (opts.method ?? 'GET').toUpperCase()
  let body = opts.body
  let headers: Record<string, string> = { 'user-agent': 'stratos', accept: '*/*', ...opts.headers }

  for (let hop = 0; ; hop++) {
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new SafeFetchError('bad-url', `unsupported URL scheme: ${url.protocol}`)
    }
    if (url.username || url.password) {
      throw new SafeFetchError('bad-url', 'URLs with credentials are not fetched')
    }
    const host = url.hostname.startsWith('[') ? url.hostname.slice(1, -1) : url.hostname
    if (net.isIP(host) && !allowPrivate && !isPublicAddress(host)) {
      throw new SafeFetchError('forbidden-address', `refusing to connect to ${host}: not a public address`)
    }

    let result: HopResult
    try {
      const agent = opts.keepAlive ? keepAliveAgent(url.protocol, allowPrivate, lookupAll) : false
      try {
        result = await requestHop(url, method, headers, body, signal, maxBytes, allowPrivate, lookupAll, opts.onData, opts.onChunk, agent)
      } catch (err) {
        // once, on a fresh connection (nothing was received: safe to send again)
        if (!(err instanceof StaleConnectionError)) throw err
        result = await requestHop(url, method, headers, body, signal, maxBytes, allowPrivate, lookupAll, opts.onData, opts.onChunk, false)
      }
    } catch (err) {
      if (err instanceof SafeFetchError) throw err
      if (timeoutSignal.aborted) {
        throw new SafeFetchError('timeout', `request to ${url.host} timed out after ${timeoutMs} ms`, { cause: err })
      }
      if (signal.aborted) throw new SafeFetchError('aborted', `request to ${url.host} was aborted`, { cause: err })
      const message = err instanceof Error ? err.message : String(err)
      const code = (err as { code?: unknown } | null)?.code
      const fail = new SafeFetchError('network', `request to ${url.host} failed${typeof code === 'string' ? ` (${code})` : ''}`, { cause: err })
      fail.detail = message
      throw fail
    }

    if (result.body === null) {
      if (hop >= maxRedirects) {
        throw new SafeFetchError('too-many-redirects', `more than ${maxRedirects} redirects from ${String(input)}`)
      }
      let next: URL
      try {
        next = new URL(String(result.headers.location), url)
      } catch {
        throw new SafeFetchError('bad-url', `bad redirect location from ${url.host}`)
      }
      if (result.status === 303 || ((result.status === 301 || result.status === 302) && method === 'POST')) {
        method = 'GET'
        body = undefined
      }
      if (next.origin !== url.origin) {
        // credentials and a caller-chosen Host belong to the original origin only
        const { authorization: _a, host: _h, ...rest } = Object.fromEntries(
          Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]),
        )
        headers = rest
      }
      url = next
      continue
    }

    const bytes = result.body
    const status = result.status
    return {
      url: url.toString(),
      status,
      ok: status >= 200 && status < 300,
      headers: toHeaders(result.rawHeaders),
      body: bytes,
      text: () => new TextDecoder().decode(bytes),
      json: <T>() => JSON.parse(new TextDecoder().decode(bytes)) as T,
    }
  }
}
