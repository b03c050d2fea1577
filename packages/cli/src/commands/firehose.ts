/**
 * `stratos firehose <ws url>`: a subscribeRepos stream as JSON lines, blocks decoded to records, with
 * optional sync-1.1 verification of every commit.
 */
import { CID, cborDecode, lexToJson } from '@stratos/core/data'
import type { IdentityResolver } from '@stratos/core/identity'
import {
  decodeCommit,
  readCarSync,
  verifyCommitEvent,
  verifySyncEvent,
  type CommitCheckFailure,
  type CommitEvent,
  type RepoState,
  type SyncEvent,
} from '@stratos/core/repo'
import { StreamErrorFrame, StreamHttpError, SubscriptionClient, type StreamEvent } from '@stratos/core/stream'
import { EXIT_FAILURE, EXIT_OK, UsageError, command, intOption } from '../util/command.js'
import { identityOptions, resolverFromFlags } from '../util/identity.js'
import { note, write, type Io } from '../util/io.js'
import { followJetstream, jetstreamUrl, listOption } from './jetstream.js'

export const SUBSCRIBE_REPOS = 'com.atproto.sync.subscribeRepos'

/** Accepts ws(s)://, http(s):// and bare hosts; adds the subscribeRepos path when none is given. */
export function firehoseUrl(input: string): string {
  const withScheme = /^[a-z][a-z0-9+.-]*:\/\//i.test(input) ? input : `ws://${input}`
  let u: URL
  try {
    u = new URL(withScheme)
  } catch {
    throw new UsageError(`not a URL: '${input}'`)
  }
  if (u.protocol === 'http:') u.protocol = 'ws:'
  else if (u.protocol === 'https:') u.protocol = 'wss:'
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new UsageError(`expected a ws:// or wss:// URL, got '${input}'`)
  if (u.pathname === '/' || u.pathname === '') u.pathname = `/xrpc/${SUBSCRIBE_REPOS}`
  u.searchParams.delete('cursor')
  return u.toString()
}

function cidString(v: unknown): string | null | undefined {
  if (v === null) return null
  const cid = CID.asCID(v)
  return cid ? cid.toString() : undefined
}

function safeJson(v: unknown): unknown {
  try {
    return lexToJson(v)
  } catch (err) {
    return { $error: (err as Error).message }
  }
}

/**
 * One event as a JSON-ready object: `{seq, type, ...}`. `#commit` ops carry the record decoded from the
 * CAR slice; `#sync` carries the decoded commit. Other types keep their fields (bytes as `$bytes`).
 */
export function formatEvent(evt: Pick<StreamEvent, 't' | 'body'>): Record<string, unknown> {
  const type = evt.t.startsWith('#') ? evt.t.slice(1) : evt.t
  const body = evt.body
  const out: Record<string, unknown> = {}
  if (body.seq !== undefined) out.seq = body.seq
  out.type = type
  if (evt.t === '#commit') {
    const blocksBytes = body.blocks instanceof Uint8Array ? body.blocks : undefined
    let blocks: ReturnType<typeof readCarSync>['blocks'] | undefined
    let blocksError: string | undefined
    if (blocksBytes) {
      try {
        blocks = readCarSync(blocksBytes).blocks
      } catch (err) {
        blocksError = (err as Error).message
      }
    }
    out.repo = body.repo
    out.rev = body.rev
    out.since = body.since ?? null
    out.time = body.time
    out.commit = cidString(body.commit) ?? null
    if (body.prevData !== undefined) out.prevData = cidString(body.prevData) ?? null
    if (body.tooBig) out.tooBig = true
    if (body.rebase) out.rebase = true
    const ops = Array.isArray(body.ops) ? (body.ops as Record<string, unknown>[]) : []
    out.ops = ops.map((op) => {
      const o: Record<string, unknown> = { action: op.action, path: op.path, cid: cidString(op.cid) ?? null }
      if (op.prev !== undefined && op.prev !== null) o.prev = cidString(op.prev)
      const cid = CID.asCID(op.cid)
      const bytes = cid && blocks ? blocks.get(cid) : undefined
      if (bytes) {
        try {
          o.record = lexToJson(cborDecode(bytes))
        } catch (err) {
          o.recordError = (err as Error).message
        }
      } else if (cid && op.action !== 'delete') {
        o.record = null
      }
      return o
    })
    if (Array.isArray(body.blobs) && body.blobs.length > 0) out.blobs = body.blobs.map((b) => cidString(b) ?? null)
    if (blocksBytes) out.blocksSize = blocksBytes.byteLength
    if (blocksError) out.blocksError = blocksError
    return out
  }
  if (evt.t === '#sync') {
    out.did = body.did
    out.rev = body.rev
    out.time = body.time
    if (body.blocks instanceof Uint8Array) {
      try {
        const car = readCarSync(body.blocks)
        const root = car.roots[0]
        const bytes = root ? car.blocks.get(root) : undefined
        if (root && bytes) {
          const { commit } = decodeCommit(bytes)
          out.commit = { cid: root.toString(), did: commit.did, rev: commit.rev, data: commit.data.toString() }
        }
      } catch (err) {
        out.blocksError = (err as Error).message
      }
    }
    return out
  }
  for (const [k, v] of Object.entries(body)) {
    if (k === 'seq') continue
    out[k] = safeJson(v)
  }
  return out
}

/** Verifies commits and syncs with each repo's signing key, keeping each repo's last state to check the chain. */
export class StreamVerifier {
  private readonly state = new Map<string, RepoState>()

  constructor(private readonly resolver: IdentityResolver) {}

  async verify(evt: Pick<StreamEvent, 't' | 'body'>): Promise<{ verified: boolean; reason?: string; message?: string } | undefined> {
    const body = evt.body
    if (evt.t === '#identity' && typeof body.did === 'string') {
      await this.resolver.invalidate(body.did)
      return undefined
    }
    if (evt.t !== '#commit' && evt.t !== '#sync') return undefined
    const did = evt.t === '#commit' ? body.repo : body.did
    if (typeof did !== 'string') return { verified: false, reason: 'malformed', message: 'event names no repo' }
    let key: string
    try {
      key = await this.resolver.getSigningKey(did)
    } catch (err) {
      return { verified: false, reason: 'identity-unresolved', message: (err as Error).message }
    }
    const check = (signingKey: string) =>
      evt.t === '#commit'
        ? verifyCommitEvent(body as unknown as CommitEvent, { signingKey, prev: this.state.get(did) ?? null })
        : verifySyncEvent(body as unknown as SyncEvent, { signingKey, prev: this.state.get(did) ?? null })
    let res = await check(key)
    if (!res.ok && res.reason === 'bad-signature') {
      // the key may have rotated: refresh the identity once and try again
      try {
        const fresh = await this.resolver.getSigningKey(did, true)
        if (fresh !== key) res = await check(fresh)
      } catch {
        // keep the first answer
      }
    }
    if (res.ok) {
      this.state.set(did, { rev: res.commit.rev, data: res.newData })
      return { verified: true }
    }
    const failure = res as CommitCheckFailure
    if (failure.reason === 'chain-break' && failure.commit && failure.newData) {
      // the commit itself is valid: follow it from here on
      this.state.set(did, { rev: failure.commit.rev, data: failure.newData })
    }
    return { verified: false, reason: failure.reason, message: failure.message }
  }
}

export const firehoseCommand = command({
  name: 'firehose',
  summary: 'Print a com.atproto.sync.subscribeRepos stream as JSON lines, blocks decoded to records',
  usage: 'firehose <ws-url> [--cursor N] [--verify] [--limit N] [options]\n       firehose <ws-url> --jetstream [--collection NSID]... [--did DID]... [--cursor TIME_US] [--limit N]',
  description: `
One event per line on stdout: {"seq":…,"type":"commit","repo":…,"rev":…,"ops":[{"action","path","cid",
"record"}],…}; #identity, #account and #sync events likewise. The URL may be a host (ws://host:port) — the
subscribeRepos path is added — or a full endpoint URL. Connection notes go to stderr.

--verify checks every #commit and #sync as a relay does (sync 1.1: signature with the account's current
key from its DID document, MST inversion, rev order, chain) and adds "verified": true|false and "reason".

The stream is followed until --limit events, Ctrl-C, or (with --once) the server closing it; otherwise
the connection is retried with backoff, resuming from the last seq seen.

--jetstream reads a Jetstream endpoint instead (a Stratos relay's GET /subscribe, or Jetstream itself; the
/subscribe path is added to a bare host): its JSON events are printed as they come, filtered by the server
with --collection (NSIDs or prefixes like app.bsky.feed.*) and --did, both repeatable or comma-separated;
--cursor is then a unix time in microseconds, and reconnects resume from the last time_us seen.`,
  options: {
    cursor: { type: 'string', valueName: 'N', description: 'start after this seq (replay from the server backlog)' },
    limit: { type: 'string', valueName: 'N', description: 'exit after printing N events' },
    verify: { type: 'boolean', description: 'verify commits and syncs (signature, MST inversion, chain)' },
    once: { type: 'boolean', description: 'exit when the server closes the connection instead of reconnecting' },
    jetstream: { type: 'boolean', description: "read a Jetstream endpoint (JSON events; the relay's /subscribe)" },
    collection: { type: 'string', multiple: true, valueName: 'NSID', description: 'with --jetstream: wanted collection (or prefix.*)' },
    did: { type: 'string', multiple: true, valueName: 'DID', description: 'with --jetstream: wanted DID' },
    ...identityOptions,
  },
  positionals: { min: 1, max: 1 },
  examples: [
    'stratos firehose wss://bsky.network --limit 10',
    'stratos firehose ws://127.0.0.1:2584 --cursor 0 --verify --dev --plc http://127.0.0.1:2582',
    "stratos firehose ws://127.0.0.1:2584 --jetstream --collection 'app.bsky.feed.*' --did did:plc:…",
  ],
  async run({ values, positionals, io }) {
    const collections = listOption(values.collection)
    const dids = listOption(values.did)
    if (values.jetstream) {
      if (values.verify) throw new UsageError('--verify reads the CBOR firehose; it does not apply to --jetstream')
      const url = jetstreamUrl(positionals[0]!, { collections, dids })
      const startCursor = intOption('cursor', values.cursor)
      const limit = intOption('limit', values.limit, { min: 1 })
      return followJetstream(io, { url, startCursor, limit, once: values.once })
    }
    if (collections.length > 0 || dids.length > 0) throw new UsageError('--collection and --did filter a Jetstream stream: add --jetstream')
    const url = firehoseUrl(positionals[0]!)
    const startCursor = intOption('cursor', values.cursor)
    const limit = intOption('limit', values.limit, { min: 1 })
    const verifier = values.verify ? new StreamVerifier(resolverFromFlags(values)) : undefined
    return followStream(io, { url, startCursor, limit, once: values.once, verifier })
  },
})

export interface FollowOptions {
  url: string
  startCursor?: number
  limit?: number
  once?: boolean
  verifier?: StreamVerifier
}

export async function followStream(io: Io, opts: FollowOptions): Promise<number> {
  let lastSeq = opts.startCursor
  let printed = 0
  let connectedOnce = false
  let closedOnce = false
  let release: (() => void) | undefined
  let finished = false
  let resolveExit!: (code: number) => void
  const exit = new Promise<number>((r) => (resolveExit = r))
  const finish = (code: number, message?: string) => {
    if (finished) return
    finished = true
    if (message) io.stderr.write(`stratos firehose: ${message}\n`)
    resolveExit(code)
  }

  const stdoutError = (err: NodeJS.ErrnoException) => {
    // the reader went away (`| head`): stop quietly
    finish(err.code === 'EPIPE' ? EXIT_OK : EXIT_FAILURE, err.code === 'EPIPE' ? undefined : `cannot write output: ${err.message}`)
  }
  const stdoutEmitter = io.stdout as unknown as { on?: (e: string, l: (err: Error) => void) => void; off?: (e: string, l: (err: Error) => void) => void }
  stdoutEmitter.on?.('error', stdoutError)

  const client = new SubscriptionClient({
    url: opts.url,
    getCursor: () => {
      if (opts.once && closedOnce) {
        // --once: called once the closed connection's events are all printed; hold the client here until stop()
        finish(EXIT_OK)
        return new Promise<number | undefined>((r) => (release = () => r(lastSeq)))
      }
      return lastSeq
    },
    minBackoffMs: opts.once ? 1 : 500,
    maxBackoffMs: 15_000,
    onOpen: () => {
      note(io, `${connectedOnce ? 'reconnected' : 'connected'} to ${opts.url}${lastSeq !== undefined ? ` (cursor ${lastSeq})` : ''}`)
      connectedOnce = true
    },
    onClose: (code, reason) => {
      if (finished) return
      closedOnce = true
      if (opts.once) return // exits once the queued events are printed (see getCursor)
      if (connectedOnce) note(io, `connection closed (${code}${reason ? ` ${reason}` : ''}); reconnecting${lastSeq !== undefined ? ` from seq ${lastSeq}` : ''}`)
    },
    onInfo: (info) => note(io, `info: ${info.name}${info.message ? `: ${info.message}` : ''}`),
    onError: (err) => {
      if (finished) return
      if (err instanceof StreamErrorFrame) {
        finish(EXIT_FAILURE, `the server sent an error: ${err.message}`)
      } else if (err instanceof StreamHttpError) {
        finish(EXIT_FAILURE, err.message)
      } else if (!connectedOnce) {
        const code = (err as NodeJS.ErrnoException).code
        finish(EXIT_FAILURE, `cannot connect to ${opts.url}: ${code ?? err.message}`)
      } else {
        note(io, `stream error: ${err.message}`)
      }
    },
    onEvent: async (evt) => {
      if (finished) return
      if (evt.seq !== undefined) lastSeq = evt.seq
      const out = formatEvent(evt)
      if (opts.verifier) {
        const v = await opts.verifier.verify(evt)
        if (v) Object.assign(out, v)
      }
      await write(io.stdout, `${JSON.stringify(out)}\n`)
      printed++
      if (opts.limit !== undefined && printed >= opts.limit) finish(EXIT_OK)
    },
  })

  const onAbort = () => finish(EXIT_OK)
  if (io.signal?.aborted) return EXIT_OK
  io.signal?.addEventListener('abort', onAbort, { once: true })
  client.start()
  const code = await exit
  io.signal?.removeEventListener('abort', onAbort)
  const stopping = client.stop()
  release?.()
  await stopping
  stdoutEmitter.off?.('error', stdoutError)
  note(io, `${printed} event${printed === 1 ? '' : 's'}${lastSeq !== undefined ? `, last seq ${lastSeq}` : ''}`)
  return code
}
