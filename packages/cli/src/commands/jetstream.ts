/**
 * `stratos firehose --jetstream`: a Jetstream endpoint (the relay's GET /subscribe, or Jetstream itself) as
 * JSON lines, with the same filters (wanted collections with `.*` prefixes, wanted DIDs) and a time cursor;
 * reconnects resume from the last time_us seen.
 */
import WebSocket from 'ws'
import { EXIT_FAILURE, EXIT_OK, UsageError } from '../util/command.js'
import { note, write, type Io } from '../util/io.js'

export interface JetstreamFilters {
  collections: string[]
  dids: string[]
}

/** ws(s)://, http(s):// or a bare host; adds /subscribe when no path is given, and the filters. */
export function jetstreamUrl(input: string, filters: JetstreamFilters): string {
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
  if (u.pathname === '/' || u.pathname === '') u.pathname = '/subscribe'
  u.searchParams.delete('cursor')
  for (const c of filters.collections) u.searchParams.append('wantedCollections', c)
  for (const d of filters.dids) u.searchParams.append('wantedDids', d)
  return u.toString()
}

/** Splits repeated and comma-separated option values. */
export function listOption(values: readonly string[] | undefined): string[] {
  return (values ?? []).flatMap((v) => v.split(',')).map((v) => v.trim()).filter((v) => v.length > 0)
}

export interface JetstreamFollowOptions {
  url: string
  /** unix µs */
  startCursor?: number
  limit?: number
  once?: boolean
}

export async function followJetstream(io: Io, opts: JetstreamFollowOptions): Promise<number> {
  let cursor = opts.startCursor
  let printed = 0
  let connectedOnce = false
  let finished = false
  let ws: WebSocket | undefined
  let retry: NodeJS.Timeout | undefined
  let backoff = 500
  let resolveExit!: (code: number) => void
  const exit = new Promise<number>((r) => (resolveExit = r))
  const finish = (code: number, message?: string) => {
    if (finished) return
    finished = true
    if (message) io.stderr.write(`stratos firehose: ${message}\n`)
    resolveExit(code)
  }
  // printing in order, one line at a time (stdout may apply backpressure)
  let chain: Promise<void> = Promise.resolve()

  const connect = () => {
    if (finished) return
    const u = new URL(opts.url)
    if (cursor !== undefined) u.searchParams.set('cursor', String(cursor))
    const sock = new WebSocket(u)
    ws = sock
    sock.on('open', () => {
      note(io, `${connectedOnce ? 'reconnected' : 'connected'} to ${opts.url}${cursor !== undefined ? ` (cursor ${cursor})` : ''}`)
      connectedOnce = true
      backoff = 500
    })
    sock.on('unexpected-response', (_req, res) => {
      let text = ''
      res.on('data', (c: Buffer) => (text += c.toString()))
      res.on('end', () => {
        let detail = text
        try {
          const body = JSON.parse(text) as { error?: string; message?: string }
          detail = [body.error, body.message].filter(Boolean).join(': ')
        } catch {
          // not JSON
        }
        finish(EXIT_FAILURE, `the server refused the subscription (HTTP ${res.statusCode}${detail ? `: ${detail}` : ''})`)
      })
    })
    sock.on('message', (data, isBinary) => {
      if (finished) return
      if (isBinary) {
        finish(EXIT_FAILURE, 'the server sent a binary (compressed?) message; this command reads uncompressed JSON')
        return
      }
      const text = (data as Buffer).toString('utf8')
      let evt: { time_us?: unknown }
      try {
        evt = JSON.parse(text) as { time_us?: unknown }
      } catch {
        note(io, 'skipped a message that is not JSON')
        return
      }
      if (typeof evt.time_us === 'number') cursor = evt.time_us
      chain = chain.then(async () => {
        if (finished) return
        await write(io.stdout, `${text}\n`)
        printed++
        if (opts.limit !== undefined && printed >= opts.limit) finish(EXIT_OK)
      })
    })
    sock.on('error', (err: NodeJS.ErrnoException) => {
      if (finished) return
      if (!connectedOnce) finish(EXIT_FAILURE, `cannot connect to ${opts.url}: ${err.code ?? err.message}`)
      else note(io, `stream error: ${err.message}`)
    })
    sock.on('close', (code, reason) => {
      if (finished) return
      if (opts.once) {
        void chain.then(() => finish(EXIT_OK))
        return
      }
      note(io, `connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''}); reconnecting${cursor !== undefined ? ` from time_us ${cursor}` : ''}`)
      retry = setTimeout(connect, backoff)
      backoff = Math.min(backoff * 2, 15_000)
    })
  }

  const onAbort = () => finish(EXIT_OK)
  if (io.signal?.aborted) return EXIT_OK
  io.signal?.addEventListener('abort', onAbort, { once: true })
  connect()
  const code = await exit
  io.signal?.removeEventListener('abort', onAbort)
  if (retry) clearTimeout(retry)
  if (ws && ws.readyState !== WebSocket.CLOSED) {
    const s = ws
    await new Promise<void>((r) => {
      s.once('close', () => r())
      s.close()
      setTimeout(() => {
        s.terminate()
        r()
      }, 1_000).unref()
    })
  }
  note(io, `${printed} event${printed === 1 ? '' : 's'}${cursor !== undefined ? `, last time_us ${cursor}` : ''}`)
  return code
}
