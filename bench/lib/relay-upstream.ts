/**
 * Child process of bench/relay.ts: the upstream. Generates (once) real signed sync-1.1 commits of N accounts
 * with @atproto/repo (cached under bench/.cache/), then serves, on one port:
 *   GET /<did>                                   the accounts' did:plc documents (a PLC directory)
 *   GET /xrpc/com.atproto.server.describeServer  (the relay's requestCrawl/addHost probe)
 *   WS  /xrpc/com.atproto.sync.subscribeRepos    replays the frames from the cursor, as fast as the reader
 *                                                takes them (send buffer ≤ 1 MiB), or at `rate` frames/s
 * Prints one JSON line `{ ready, url, frames, commits }`, then on each stream's end one line
 * `{ stream: n, first, last, sent }` (wall-clock ms). With `sendTimes`, writes the wall-clock send time
 * of every frame (Float64Array, by upstream seq - 1) to that file when a stream ends.
 *
 *   node --import tsx bench/lib/relay-upstream.ts '{"accounts":50,"commits":10000,"rate":0,"limit":0}'
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:http'
import type { AddressInfo } from 'node:net'
import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { encodeMessageFrame } from '../../packages/core/src/stream/index.js'
import { BenchAccount } from './fixtures.js'

const require = createRequire(new URL('../../services/relay/package.json', import.meta.url))
const { WebSocketServer, WebSocket } = require('ws') as typeof import('ws')

interface Opts {
  accounts: number
  commits: number
  /** frames per second; 0 = as fast as the reader takes them */
  rate: number
  /** replay only the first `limit` frames (0 = all) */
  limit: number
  sendTimes?: string
}

export interface FixtureIndex {
  accounts: { did: string; key: string }[]
  /** per frame (upstream seq - 1): type, DID and rev (commits) */
  frames: { t: string; did: string; rev?: string }[]
}

const CACHE = fileURLToPath(new URL('../.cache/', import.meta.url))

/** The cached fixture: frames (seq 1..n, length-prefixed) and their index. */
export function fixturePaths(accounts: number, commits: number) {
  const base = `${CACHE}relay-${accounts}a-${commits}c-v1`
  return { frames: `${base}.frames`, index: `${base}.json` }
}

async function generate(accounts: number, commits: number): Promise<{ frames: Uint8Array[]; index: FixtureIndex }> {
  const started = Date.now()
  const frames: Uint8Array[] = []
  const index: FixtureIndex = { accounts: [], frames: [] }
  const now = () => new Date().toISOString()
  const push = (t: string, did: string, body: Record<string, unknown>, rev?: string) => {
    frames.push(encodeMessageFrame(t, { ...body, seq: frames.length + 1 }))
    index.frames.push(rev ? { t, did, rev } : { t, did })
  }
  const list: BenchAccount[] = []
  for (let i = 0; i < accounts; i++) {
    const a = await BenchAccount.create()
    list.push(a)
    index.accounts.push({ did: a.did, key: a.keypair.did() })
    push('#identity', a.did, { did: a.did, time: now() })
    push('#account', a.did, { did: a.did, active: true, time: now() })
    push('#commit', a.did, a.initEvent as unknown as Record<string, unknown>, a.initEvent.rev)
  }
  for (let i = 0; i < commits; i++) {
    const a = list[i % accounts]!
    const evt = await a.createOne()
    push('#commit', a.did, evt as unknown as Record<string, unknown>, evt.rev)
    if ((i + 1) % 1000 === 0) process.stderr.write(`relay-upstream: generated ${i + 1}/${commits} commits (${Math.round((Date.now() - started) / 1000)} s)\n`)
  }
  return { frames, index }
}

export function loadFixture(accounts: number, commits: number): { frames: Uint8Array[]; index: FixtureIndex } | null {
  const p = fixturePaths(accounts, commits)
  if (!existsSync(p.frames) || !existsSync(p.index)) return null
  const buf = readFileSync(p.frames)
  const frames: Uint8Array[] = []
  for (let off = 0; off < buf.length; ) {
    const len = buf.readUInt32BE(off)
    frames.push(buf.subarray(off + 4, off + 4 + len))
    off += 4 + len
  }
  return { frames, index: JSON.parse(readFileSync(p.index, 'utf8')) as FixtureIndex }
}

function saveFixture(accounts: number, commits: number, frames: Uint8Array[], index: FixtureIndex): void {
  mkdirSync(CACHE, { recursive: true })
  const p = fixturePaths(accounts, commits)
  const total = frames.reduce((a, f) => a + 4 + f.length, 0)
  const buf = Buffer.alloc(total)
  let off = 0
  for (const f of frames) {
    buf.writeUInt32BE(f.length, off)
    buf.set(f, off + 4)
    off += 4 + f.length
  }
  writeFileSync(p.frames, buf)
  writeFileSync(p.index, JSON.stringify(index))
}

async function main() {
  const opts: Opts = { accounts: 50, commits: 10_000, rate: 0, limit: 0, ...JSON.parse(process.argv[2] ?? '{}') }
  let fixture = loadFixture(opts.accounts, opts.commits)
  if (!fixture) {
    fixture = await generate(opts.accounts, opts.commits)
    saveFixture(opts.accounts, opts.commits, fixture.frames, fixture.index)
  }
  const { index } = fixture
  const frames = opts.limit > 0 ? fixture.frames.slice(0, opts.limit) : fixture.frames
  const keys = new Map(index.accounts.map((a) => [a.did, a.key]))
  let url = ''
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0]!
    if (path.startsWith('/xrpc/com.atproto.server.describeServer')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ did: 'did:web:localhost', availableUserDomains: ['.test'] }))
      return
    }
    const did = decodeURIComponent(path.slice(1))
    const key = keys.get(did)
    if (!key) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"DID not registered"}')
    res.writeHead(200, { 'content-type': 'application/did+ld+json' }).end(
      JSON.stringify({
        '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
        id: did,
        alsoKnownAs: [],
        verificationMethod: [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: key.slice('did:key:'.length) }],
        service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: url }],
      }),
    )
  })
  const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  let streams = 0
  server.on('upgrade', (req, socket, head) => {
    const u = new URL(req.url ?? '/', 'http://x')
    if (u.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') return socket.destroy()
    const cursor = Number(u.searchParams.get('cursor') ?? 0)
    wss.handleUpgrade(req, socket, head, (ws) => void stream(ws, Number.isFinite(cursor) ? cursor : 0, ++streams))
  })

  const sendTimes = new Float64Array(frames.length)
  const wall = () => performance.timeOrigin + performance.now()
  async function stream(ws: import('ws').WebSocket, cursor: number, n: number) {
    ws.on('error', () => undefined)
    let first = 0
    let sent = 0
    const start = wall()
    for (let i = Math.max(0, cursor); i < frames.length; i++) {
      if (ws.readyState !== WebSocket.OPEN) break
      if (opts.rate > 0) {
        // paced: frame i is due at start + i/rate
        const due = start + ((i - cursor) * 1000) / opts.rate
        const wait = due - wall()
        if (wait > 1) await new Promise((r) => setTimeout(r, wait))
      }
      const t = wall()
      if (!first) first = t
      sendTimes[i] = t
      if (ws.bufferedAmount > 1 << 20) await new Promise((resolve) => ws.send(frames[i]!, resolve))
      else ws.send(frames[i]!)
      sent++
    }
    if (opts.sendTimes) writeFileSync(opts.sendTimes, Buffer.from(sendTimes.buffer))
    process.stdout.write(JSON.stringify({ stream: n, first, last: wall(), sent }) + '\n')
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  const commits = index.frames.slice(0, frames.length).filter((f) => f.t === '#commit').length
  process.stdout.write(JSON.stringify({ ready: true, url, frames: frames.length, commits, pid: process.pid }) + '\n')
}

if (process.argv[1]?.endsWith('relay-upstream.ts')) {
  main().catch((err) => {
    console.error(err)
    process.exit(1)
  })
}
