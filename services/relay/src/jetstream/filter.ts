/**
 * Jetstream subscription options: the query parameters of GET /subscribe (v1: `wantedCollections`,
 * `wantedDids`, `cursor`, `compress`, `requireHello`, `maxMessageSizeBytes`) and of
 * network.bsky.jetstream.subscribeEvents (v2: `kinds`, `dids`, `collections`, `cursor`,
 * `maxMessageSizeBytes`, `zstdDictionary`), and v1's subscriber-sourced `options_update` message. Matching looks only at the kind, DID and
 * collection carried next to each encoded event.
 */
import { isValidDid, isValidNsid } from '@stratos/core/syntax'
import type { JetstreamItem, JetstreamKind } from './events.js'

export const MAX_WANTED_COLLECTIONS = 100
export const MAX_WANTED_DIDS = 10_000
/** cursors below this are Jetstream sequence numbers, at or above it unix microseconds (as in Jetstream) */
export const TIME_CURSOR_MIN = 1e15

export class OptionsError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'OptionsError'
  }
}

const KINDS: readonly JetstreamKind[] = ['commit', 'identity', 'account', 'sync']
const PREFIX_RE = /^[a-zA-Z][a-zA-Z0-9-]*(\.[a-zA-Z0-9-]+)*\.\*$/

export class Filter {
  readonly collections = new Set<string>()
  /** `app.bsky.*` is kept as `app.bsky.` */
  readonly prefixes: string[] = []
  readonly dids = new Set<string>()
  kinds: Set<JetstreamKind> | null = null
  maxMessageSizeBytes = 0

  static build(opts: {
    collections?: readonly string[]
    dids?: readonly string[]
    kinds?: readonly string[]
    maxMessageSizeBytes?: number
  }): Filter {
    const f = new Filter()
    const collections = opts.collections ?? []
    if (collections.length > MAX_WANTED_COLLECTIONS) {
      throw new OptionsError(`at most ${MAX_WANTED_COLLECTIONS} wanted collections, got ${collections.length}`)
    }
    for (const c of collections) {
      if (typeof c !== 'string') throw new OptionsError('wanted collections must be strings')
      if (c.endsWith('.*')) {
        if (!PREFIX_RE.test(c) || c.length > 317) throw new OptionsError(`invalid collection prefix: ${c}`)
        f.prefixes.push(c.slice(0, -1))
      } else {
        if (!isValidNsid(c)) throw new OptionsError(`invalid collection NSID: ${c}`)
        f.collections.add(c)
      }
    }
    const dids = opts.dids ?? []
    if (dids.length > MAX_WANTED_DIDS) throw new OptionsError(`at most ${MAX_WANTED_DIDS} wanted DIDs, got ${dids.length}`)
    for (const d of dids) {
      if (typeof d !== 'string' || !isValidDid(d)) throw new OptionsError(`invalid DID: ${String(d)}`)
      f.dids.add(d)
    }
    if (opts.kinds && opts.kinds.length > 0) {
      f.kinds = new Set()
      for (const k of opts.kinds) {
        if (!(KINDS as readonly string[]).includes(k)) throw new OptionsError(`unknown kind: ${k} (commit, identity, account, sync)`)
        f.kinds.add(k as JetstreamKind)
      }
    }
    const max = opts.maxMessageSizeBytes ?? 0
    if (!Number.isSafeInteger(max) || max < 0) throw new OptionsError('maxMessageSizeBytes must be an integer >= 0')
    f.maxMessageSizeBytes = max
    return f
  }

  /** Jetstream's rule: DIDs filter every kind, collections filter commit events only. */
  matches(item: JetstreamItem): boolean {
    if (this.kinds && !this.kinds.has(item.kind)) return false
    if (this.dids.size > 0 && !this.dids.has(item.did)) return false
    if (item.kind === 'commit' && (this.collections.size > 0 || this.prefixes.length > 0)) {
      const c = item.collection!
      if (this.collections.has(c)) return true
      for (const p of this.prefixes) if (c.startsWith(p)) return true
      return false
    }
    return true
  }
}

export interface SubscribeParams {
  /** 1: GET /subscribe (Jetstream v1 wire); 2: network.bsky.jetstream.subscribeEvents (xrpc.v1.json frames) */
  version: 1 | 2
  filter: Filter
  /** a Jetstream seq (cursor < 10^15): the first event sent is the first of seq >= cursor */
  cursorSeq?: number
  /** a unix-µs time (cursor >= 10^15): v1 sends events of time_us > cursor, v2 of time_us >= cursor */
  cursorUs?: number
  /** v1: compress=true or `Socket-Encoding: zstd` */
  compress: boolean
  /** v2: the zstd dictionary id the client asked for (zstdDictionary=<id>) */
  zstdDictionary?: number
  requireHello: boolean
}

function list(query: URLSearchParams, name: string): string[] | undefined {
  if (!query.has(name)) return undefined
  return query
    .getAll(name)
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter((v) => v.length > 0)
}

function bool(query: URLSearchParams, name: string): boolean {
  const v = query.get(name)
  if (v === null) return false
  if (/^(true|1)$/i.test(v)) return true
  if (/^(false|0)$/i.test(v)) return false
  throw new OptionsError(`${name} must be true or false`)
}

function int(query: URLSearchParams, name: string): number | undefined {
  const v = query.get(name)
  if (v === null || v === '') return undefined
  if (!/^[0-9]+$/.test(v) || !Number.isSafeInteger(Number(v))) throw new OptionsError(`${name} must be an integer >= 0`)
  return Number(v)
}

function setCursor(params: SubscribeParams, cursor: number | undefined): void {
  if (cursor === undefined) return
  if (cursor < TIME_CURSOR_MIN) params.cursorSeq = cursor
  else params.cursorUs = cursor
}

/** Parses the query of GET /subscribe, Jetstream's v1 parameters (throws OptionsError). */
export function parseSubscribeQuery(query: URLSearchParams, zstdHeader = false): SubscribeParams {
  const filter = Filter.build({
    collections: list(query, 'wantedCollections'),
    dids: list(query, 'wantedDids'),
    maxMessageSizeBytes: int(query, 'maxMessageSizeBytes'),
  })
  const params: SubscribeParams = {
    version: 1,
    filter,
    compress: bool(query, 'compress') || zstdHeader,
    requireHello: bool(query, 'requireHello'),
  }
  setCursor(params, int(query, 'cursor'))
  return params
}

/**
 * Parses the query of network.bsky.jetstream.subscribeEvents (v2; throws OptionsError): `kinds`, `dids`,
 * `collections`, `cursor`, `maxMessageSizeBytes`, `zstdDictionary`. The v1 names and opt-ins are refused
 * with the replacement named, as Jetstream does, rather than silently ignored.
 */
export function parseSubscribeEventsQuery(query: URLSearchParams, zstdHeader = false): SubscribeParams {
  const legacy: Record<string, string> = {
    wantedDids: 'wantedDids is the /subscribe (v1) parameter; use dids',
    wantedCollections: 'wantedCollections is the /subscribe (v1) parameter; use collections',
    requireHello: 'requireHello is not supported on this endpoint: it is server-push only',
    compress: 'compress=true is the /subscribe (v1) opt-in; this endpoint uses zstdDictionary=<id>',
  }
  for (const [name, message] of Object.entries(legacy)) if (query.has(name)) throw new OptionsError(message)
  if (zstdHeader) throw new OptionsError('Socket-Encoding: zstd is the /subscribe (v1) opt-in; this endpoint uses zstdDictionary=<id>')
  const kinds = list(query, 'kinds')
  if (kinds && kinds.length > 4) throw new OptionsError(`at most 4 kinds, got ${kinds.length}`)
  const collections = list(query, 'collections')
  const filter = Filter.build({
    collections,
    dids: list(query, 'dids'),
    kinds,
    maxMessageSizeBytes: int(query, 'maxMessageSizeBytes'),
  })
  if (collections && collections.length > 0 && filter.kinds && !filter.kinds.has('commit')) {
    throw new OptionsError('the collections filter can never apply: kinds excludes commit')
  }
  const params: SubscribeParams = { version: 2, filter, compress: false, requireHello: false }
  const dict = int(query, 'zstdDictionary')
  if (dict !== undefined) {
    if (dict < 1 || dict > 0xffffffff) throw new OptionsError('zstdDictionary must be a positive integer zstd dictionary id')
    params.zstdDictionary = dict
  }
  setCursor(params, int(query, 'cursor'))
  return params
}

/**
 * The v2 endpoint's one wire subprotocol (atproto proposal 0015), also the default its lexicon declares:
 * a client that offers it gets it echoed, a client that offers nothing gets the same framing unechoed.
 */
export const V2_SUBPROTOCOL = 'xrpc.v1.json'
/** an RFC 7230 token, what Sec-WebSocket-Protocol lists (RFC 6455 §4.1) */
const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/

/** The subprotocols offered in a Sec-WebSocket-Protocol header, in order ([] without the header; throws OptionsError). */
export function offeredSubprotocols(header: string | string[] | undefined): string[] {
  if (header === undefined) return []
  const raw = Array.isArray(header) ? header.join(',') : header
  const out: string[] = []
  for (const part of raw.split(',')) {
    const token = part.trim()
    if (!TOKEN_RE.test(token)) {
      throw new OptionsError(`Sec-WebSocket-Protocol must be a comma-separated list of distinct tokens, got ${JSON.stringify(raw.slice(0, 100))}`)
    }
    if (out.includes(token)) throw new OptionsError(`Sec-WebSocket-Protocol offers ${token} twice`)
    out.push(token)
  }
  return out
}

/**
 * v2: the subprotocol to echo for an offer, or null for no offer (the lexicon default applies). Tokens are
 * case-sensitive. An offer without xrpc.v1.json is refused: the client asked for a framing this endpoint
 * does not speak (e.g. xrpc.v0.cbor), and a WebSocket client that offered subprotocols fails a handshake
 * that selects none of them (browsers, `ws`), so serving the default would only fail later and less clearly.
 */
export function negotiateV2Subprotocol(offered: readonly string[]): string | null {
  if (offered.length === 0) return null
  if (offered.includes(V2_SUBPROTOCOL)) return V2_SUBPROTOCOL
  throw new OptionsError(
    `this endpoint speaks only the ${V2_SUBPROTOCOL} subprotocol; offered: ${offered.join(', ').slice(0, 200)} (offer ${V2_SUBPROTOCOL}, or no Sec-WebSocket-Protocol)`,
  )
}

/** Parses a subscriber-sourced message; returns the new filter for an `options_update`. */
export function parseSubscriberMessage(raw: string, current: Filter): Filter {
  let msg: unknown
  try {
    msg = JSON.parse(raw)
  } catch {
    throw new OptionsError('subscriber messages must be JSON')
  }
  if (!msg || typeof msg !== 'object') throw new OptionsError('subscriber messages must be JSON objects')
  const { type, payload } = msg as { type?: unknown; payload?: unknown }
  if (type !== 'options_update') throw new OptionsError(`unknown message type: ${String(type)}`)
  if (!payload || typeof payload !== 'object') throw new OptionsError('options_update needs a payload object')
  const p = payload as Record<string, unknown>
  const arr = (v: unknown, name: string): string[] | undefined => {
    if (v === undefined || v === null) return undefined
    if (!Array.isArray(v)) throw new OptionsError(`${name} must be an array`)
    return v as string[]
  }
  const max = p.maxMessageSizeBytes
  if (max !== undefined && (typeof max !== 'number' || !Number.isSafeInteger(max) || max < 0)) {
    throw new OptionsError('maxMessageSizeBytes must be an integer >= 0')
  }
  return Filter.build({
    collections: arr(p.wantedCollections, 'wantedCollections'),
    dids: arr(p.wantedDids, 'wantedDids'),
    maxMessageSizeBytes: (max as number | undefined) ?? current.maxMessageSizeBytes,
  })
}
