/**
 * Test fixtures for the relay: a fake PLC directory, a fake PDS (a WebSocket server emitting frames the
 * test crafts, from real @atproto/repo commits), a consumer built on @atproto/sync's Firehose, and helpers.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { IdResolver } from '@atproto/identity'
import { BlockMap, MemoryBlockstore, Repo, WriteOpAction, signCommit, type CommitData, type RecordWriteOp } from '@atproto/repo'
import { Firehose, type Event } from '@atproto/sync'
import { WebSocket, WebSocketServer } from 'ws'
import { CID, cborDecode, cborEncode, cidForCbor } from '@stratos/core/data'
import { commitSliceCar, readCarSync, repoBlocks, writeCar, type CommitEvent, type CommitEventOp } from '@stratos/core/repo'
import { decodeFrame, encodeMessageFrame, type DecodedFrame } from '@stratos/core/stream'
import { readConfig, RelayServer, type RelayConfig, type RelayContextOptions } from '../src/index.js'

export const COLL = 'app.bsky.feed.post'
export const ADMIN_PASSWORD = 'relay-admin-secret'

export async function waitFor(pred: () => boolean | Promise<boolean>, timeoutMs = 15_000, what = 'condition'): Promise<void> {
  const start = Date.now()
  for (;;) {
    if (await pred()) return
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

export function tmpDir(): { path: string; remove(): void } {
  const path = mkdtempSync(join(tmpdir(), 'stratos-relay-'))
  return { path, remove: () => rmSync(path, { recursive: true, force: true }) }
}

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

function closeServer(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections?.()
    server.close(() => resolve())
  })
}

// ---------------------------------------------------------------------------------------------------
// fake PLC

export interface DocSpec {
  signingKey: string
  pds: string
}

/** Serves GET /<did> from a map the test controls (404 unknown, 410 tombstoned). */
export class FakePlc {
  readonly docs = new Map<string, DocSpec | 'tombstone'>()
  private server!: Server
  url = ''
  requests = 0

  async start(): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res))
    const port = await listen(this.server)
    this.url = `http://127.0.0.1:${port}`
    return this
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    this.requests++
    const did = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!)
    const spec = this.docs.get(did)
    if (!spec) {
      res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'DID not registered' }))
      return
    }
    if (spec === 'tombstone') {
      res.writeHead(410, { 'content-type': 'application/json' }).end(JSON.stringify({ message: 'DID not available' }))
      return
    }
    const doc = {
      '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
      id: did,
      alsoKnownAs: [],
      verificationMethod: [
        { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: spec.signingKey.slice('did:key:'.length) },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: spec.pds }],
    }
    res.writeHead(200, { 'content-type': 'application/did+ld+json' }).end(JSON.stringify(doc))
  }

  set(did: string, spec: DocSpec | 'tombstone'): void {
    this.docs.set(did, spec)
  }

  async close(): Promise<void> {
    await closeServer(this.server)
  }
}

export function randomPlcDid(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  const bytes = randomBytes(24)
  let s = ''
  for (const b of bytes) s += alphabet[b % 32]
  return `did:plc:${s}`
}

// ---------------------------------------------------------------------------------------------------
// fake PDS

type Entry = { seq: number; frame: Uint8Array }

/**
 * A PDS as far as a relay can tell: describeServer, getRepo, and subscribeRepos serving the frames the
 * test emits (with cursor replay: cursor → seq > cursor, no cursor → live only).
 */
export class FakePds {
  readonly entries: Entry[] = []
  readonly accounts = new Map<string, FakeAccount>()
  private server!: Server
  private wss!: WebSocketServer
  readonly sockets = new Set<WebSocket>()
  seq = 0
  port = 0
  connects = 0
  getRepoCalls = 0

  constructor(readonly plc: FakePlc) {}

  get hostname(): string {
    return `127.0.0.1:${this.port}`
  }

  get url(): string {
    return `http://${this.hostname}`
  }

  async start(port = 0): Promise<this> {
    this.server = createServer((req, res) => this.handle(req, res))
    this.wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x')
      if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') return socket.destroy()
      this.wss.handleUpgrade(req, socket, head, (ws) => {
        this.connects++
        const raw = url.searchParams.get('cursor')
        if (raw !== null) {
          for (const e of this.entries) if (e.seq > Number(raw)) ws.send(e.frame)
        }
        this.sockets.add(ws)
        ws.on('close', () => this.sockets.delete(ws))
        ws.on('error', () => undefined)
      })
    })
    if (port) {
      await new Promise<void>((resolve) => this.server.listen(port, '127.0.0.1', resolve))
      this.port = port
    } else {
      this.port = await listen(this.server)
    }
    return this
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname === '/xrpc/com.atproto.server.describeServer') {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ did: `did:web:${this.hostname.replace(':', '%3A')}`, availableUserDomains: ['.test'] }))
      return
    }
    if (url.pathname === '/xrpc/com.atproto.sync.getRepo') {
      this.getRepoCalls++
      const account = this.accounts.get(url.searchParams.get('did') ?? '')
      if (!account) {
        res.writeHead(400, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'RepoNotFound' }))
        return
      }
      res.writeHead(200, { 'content-type': 'application/vnd.ipld.car' })
      res.end(Buffer.from(account.repoCar()))
      return
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ error: 'NotFound' }))
  }

  /** Encodes and sends a message frame with the next seq (stored for replays). */
  emit(t: string, body: Record<string, unknown>): number {
    const seq = ++this.seq
    const frame = encodeMessageFrame(t, { ...body, seq })
    this.entries.push({ seq, frame })
    for (const ws of this.sockets) ws.send(frame)
    return seq
  }

  /** Sends raw bytes to the connected sockets (not stored, not replayed). */
  emitRaw(bytes: Uint8Array): void {
    for (const ws of this.sockets) ws.send(bytes)
  }

  async createAccount(opts: { register?: boolean } = {}): Promise<FakeAccount> {
    const account = await FakeAccount.create(this)
    this.accounts.set(account.did, account)
    if (opts.register !== false) this.plc.set(account.did, { signingKey: account.keypair.did(), pds: this.url })
    return account
  }

  /** #identity, #account (active) and the first #commit of a new account (the recommended order). */
  async announce(account: FakeAccount): Promise<void> {
    this.emit('#identity', { did: account.did, time: now() })
    this.emit('#account', { did: account.did, active: true, time: now() })
    this.emit('#commit', account.initEvent as unknown as Record<string, unknown>)
  }

  async close(): Promise<void> {
    for (const ws of this.sockets) ws.terminate()
    this.wss.close()
    await closeServer(this.server)
  }
}

export const now = () => new Date().toISOString()

export function post(text: string, extra: Record<string, unknown> = {}) {
  return { $type: COLL, text, createdAt: '2024-01-01T00:00:00.000Z', ...extra }
}

export function createWrite(rkey: string, record: Record<string, unknown>): RecordWriteOp {
  return { action: WriteOpAction.Create, collection: COLL, rkey, record } as RecordWriteOp
}
export function updateWrite(rkey: string, record: Record<string, unknown>): RecordWriteOp {
  return { action: WriteOpAction.Update, collection: COLL, rkey, record } as RecordWriteOp
}
export function deleteWrite(rkey: string): RecordWriteOp {
  return { action: WriteOpAction.Delete, collection: COLL, rkey } as RecordWriteOp
}

const toCid = (c: { bytes: Uint8Array }) => CID.decode(c.bytes)

let rkeyCounter = 0
export function nextRkey(): string {
  rkeyCounter++
  return `p${String(rkeyCounter).padStart(8, '0')}`
}

/** An account with a real repo on a MemoryBlockstore, signing with its own key. */
export class FakeAccount {
  /** rkeys of the records the repo holds, oldest first */
  readonly rkeys: string[] = []

  private constructor(
    readonly pds: FakePds,
    readonly did: string,
    readonly keypair: Keypair,
    readonly storage: MemoryBlockstore,
    public repo: Repo,
    readonly initEvent: CommitEvent,
  ) {}

  static async create(pds: FakePds): Promise<FakeAccount> {
    const did = randomPlcDid()
    const keypair = await Secp256k1Keypair.create({ exportable: true })
    const storage = new MemoryBlockstore()
    const init = await Repo.formatInitCommit(storage, did, keypair)
    const repo = await Repo.createFromCommit(storage, init)
    const initEvent: CommitEvent = {
      rebase: false,
      tooBig: false,
      repo: did,
      commit: toCid(init.cid),
      rev: init.rev,
      since: null,
      blocks: commitSliceCar(init),
      ops: [],
      blobs: [],
      time: now(),
    }
    return new FakeAccount(pds, did, keypair, storage, repo, initEvent)
  }

  /**
   * The #commit body for `writes` (ops with prev, prevData, the CAR slice). `apply` (default true) makes it
   * the repo's new state; `keypair` signs with another key.
   */
  async commit(writes: RecordWriteOp[], opts: { apply?: boolean; keypair?: Keypair } = {}): Promise<{ evt: CommitEvent; data: CommitData }> {
    const ops: CommitEventOp[] = []
    for (const w of writes) {
      const path = `${w.collection}/${w.rkey}`
      const prevCid = await this.repo.data.get(path)
      const prev = prevCid ? toCid(prevCid) : null
      if (w.action === WriteOpAction.Create) ops.push({ action: 'create', path, cid: cidForCbor(w.record) })
      else if (w.action === WriteOpAction.Update) ops.push({ action: 'update', path, cid: cidForCbor(w.record), prev })
      else ops.push({ action: 'delete', path, cid: null, prev })
    }
    const prevData = toCid(this.repo.commit.data)
    const data = await this.repo.formatCommit(writes, opts.keypair ?? this.keypair)
    if (opts.apply !== false) {
      this.repo = await this.repo.applyCommit(data)
      for (const w of writes) {
        if (w.action === WriteOpAction.Create) this.rkeys.push(w.rkey)
        else if (w.action === WriteOpAction.Delete) this.rkeys.splice(this.rkeys.indexOf(w.rkey), 1)
      }
    }
    const evt: CommitEvent = {
      rebase: false,
      tooBig: false,
      repo: this.did,
      commit: toCid(data.cid),
      rev: data.rev,
      since: data.since,
      blocks: commitSliceCar(data),
      ops,
      blobs: [],
      prevData,
      time: now(),
    }
    return { evt, data }
  }

  /** Commits a post and emits it; returns the event. */
  async emitPost(text: string, extra: Record<string, unknown> = {}): Promise<CommitEvent> {
    const { evt } = await this.commit([createWrite(nextRkey(), post(text, extra))])
    this.pds.emit('#commit', evt as unknown as Record<string, unknown>)
    return evt
  }

  lastRkey(): string {
    const r = this.rkeys.at(-1)
    if (!r) throw new Error('no records')
    return r
  }

  repoCar(): Uint8Array {
    const commitCid = toCid(this.repo.cid)
    const get = (cid: CID) => this.storage.blocks.get(cid as never) ?? null
    return writeCar(commitCid, repoBlocks(get, commitCid))
  }
}

/** Re-signs (or corrupts the signature of) the commit inside an event's CAR, keeping the rest. */
export async function rewriteCommit(
  evt: CommitEvent,
  opts: { keypair?: Keypair; edit?: (c: Record<string, unknown>) => void; editSig?: (sig: Uint8Array) => Uint8Array },
): Promise<CommitEvent> {
  const car = readCarSync(evt.blocks)
  const old = cborDecode<Record<string, unknown>>(car.blocks.get(evt.commit as never)!)
  const { sig, ...unsigned } = old
  opts.edit?.(unsigned)
  const signed = opts.keypair
    ? ((await signCommit(unsigned as never, opts.keypair)) as unknown as Record<string, unknown>)
    : { ...unsigned, sig: opts.editSig ? opts.editSig(sig as Uint8Array) : sig }
  const bytes = cborEncode(signed)
  const cid = cidForCbor(signed)
  const blocks = new BlockMap()
  for (const [c, b] of car.blocks) if (!toCid(c).equals(evt.commit)) blocks.set(c, b)
  blocks.set(cid as never, bytes)
  return { ...evt, blocks: writeCar(cid, blocks), commit: cid }
}

// ---------------------------------------------------------------------------------------------------
// relay

export function relayConfig(dataDirectory: string, plcUrl: string, env: Record<string, string> = {}): RelayConfig {
  return readConfig({
    RELAY_PORT: '0',
    RELAY_DATA_DIRECTORY: dataDirectory,
    RELAY_PLC_URL: plcUrl,
    RELAY_DEV_MODE: 'true',
    RELAY_ADMIN_PASSWORD: ADMIN_PASSWORD,
    RELAY_RECONNECT_MIN_MS: '50',
    RELAY_RECONNECT_MAX_MS: '400',
    LOG_LEVEL: 'silent',
    // RELAY_VERIFY_WORKERS from the test's environment (ingest-inline.test.ts runs the ingest tests with 0)
    ...(process.env.RELAY_VERIFY_WORKERS !== undefined ? { RELAY_VERIFY_WORKERS: process.env.RELAY_VERIFY_WORKERS } : {}),
    ...env,
  })
}

export async function startRelay(config: RelayConfig, opts: RelayContextOptions = {}): Promise<RelayServer> {
  const relay = await RelayServer.create(config, { identityMinRefreshMs: 0, ...opts })
  await relay.start()
  return relay
}

export function adminHeaders(password = ADMIN_PASSWORD): Record<string, string> {
  return { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` }
}

export async function xrpcGet(base: string, nsid: string, params: Record<string, string> = {}, headers: Record<string, string> = {}) {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(params)) url.searchParams.set(k, v)
  const res = await fetch(url, { headers, redirect: 'manual' })
  const text = await res.text()
  let body: any
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: res.status, body, headers: res.headers }
}

export async function xrpcPost(base: string, nsid: string, input: unknown, headers: Record<string, string> = {}) {
  const res = await fetch(new URL(`/xrpc/${nsid}`, base), {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: JSON.stringify(input),
  })
  const text = await res.text()
  let body: any
  try {
    body = JSON.parse(text)
  } catch {
    body = text
  }
  return { status: res.status, body }
}

/** Parses `relay_events_dropped_total{reason="..."} N` lines from /metrics. */
export async function droppedCounts(relayUrl: string): Promise<Record<string, number>> {
  const text = await (await fetch(`${relayUrl}/metrics`)).text()
  const out: Record<string, number> = {}
  for (const m of text.matchAll(/^relay_events_dropped_total\{reason="([^"]+)"\} (\d+)/gm)) out[m[1]!] = Number(m[2])
  return out
}

/** A consumer of the relay built on @atproto/sync's Firehose (signature and MST proofs checked). */
export class FirehoseConsumer {
  readonly events: Event[] = []
  readonly errors: Error[] = []
  readonly firehose: Firehose
  private started: Promise<void>

  constructor(relayUrl: string, plcUrl: string, opts: { cursor?: number } = {}) {
    // the default fetch refuses loopback addresses (SSRF protection); the test PLC is on 127.0.0.1
    const idResolver = new IdResolver({ plcUrl, fetch: globalThis.fetch })
    const cursor = opts.cursor
    this.firehose = new Firehose({
      idResolver,
      service: relayUrl.replace(/^http/, 'ws'),
      getCursor: () => {
        const last = this.events.at(-1)?.seq
        return last ?? cursor
      },
      handleEvent: async (evt) => {
        this.events.push(evt)
      },
      onError: (err) => {
        this.errors.push(err)
      },
      subscriptionReconnectDelay: 100,
      maxReconnectSeconds: 1,
    })
    this.started = this.firehose.start()
  }

  /** Texts of created records, in order. */
  texts(): string[] {
    return this.events.flatMap((e) => (e.event === 'create' ? [String((e.record as { text?: unknown }).text)] : []))
  }

  async waitForText(text: string, timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.texts().includes(text), timeoutMs, `firehose to deliver "${text}"`)
  }

  async close(): Promise<void> {
    await this.firehose.destroy()
    await this.started
  }
}

/** A raw WebSocket consumer of the relay's subscribeRepos recording every decoded frame. */
export class RawConsumer {
  readonly ws: WebSocket
  readonly frames: DecodedFrame[] = []
  readonly opened: Promise<void>
  readonly closed: Promise<{ code: number; reason: string }>

  constructor(relayUrl: string, cursor?: number) {
    const url = `${relayUrl.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos${cursor === undefined ? '' : `?cursor=${cursor}`}`
    this.ws = new WebSocket(url, { perMessageDeflate: false })
    this.opened = new Promise((resolve, reject) => {
      this.ws.once('open', () => resolve())
      this.ws.once('error', reject)
    })
    this.closed = new Promise((resolve) => this.ws.once('close', (code, reason) => resolve({ code, reason: reason.toString() })))
    this.ws.on('message', (data: Buffer) => this.frames.push(decodeFrame(data)))
    this.ws.on('error', () => undefined)
  }

  seqs(): number[] {
    return this.frames.flatMap((f) => (f.op === 1 && typeof f.body.seq === 'number' ? [f.body.seq] : []))
  }

  close(): void {
    this.ws.terminate()
  }
}

/**
 * A fake PLC and PDS, a relay (configured by `env`) and a Firehose consumer of it; `announce` makes accounts on the
 * PDS (each announced with a first post), then the relay crawls the PDS and the consumer waits for the last post.
 */
export async function relayNetwork(env: Record<string, string> = {}, firstPosts: string[] = []) {
  const dir = tmpDir()
  const plc = await new FakePlc().start()
  const pds = await new FakePds(plc).start()
  const relay = await startRelay(relayConfig(dir.path, plc.url, env))
  const consumer = new FirehoseConsumer(relay.url, plc.url)
  const accounts: FakeAccount[] = []
  for (const text of firstPosts) {
    const a = await pds.createAccount()
    await pds.announce(a)
    await a.emitPost(text)
    accounts.push(a)
  }
  const crawl = await xrpcPost(relay.url, 'com.atproto.sync.requestCrawl', { hostname: pds.url })
  if (crawl.status !== 200) throw new Error(`requestCrawl answered ${crawl.status}`)
  if (firstPosts.length > 0) await consumer.waitForText(firstPosts.at(-1)!)
  return {
    dir,
    plc,
    pds,
    relay,
    consumer,
    accounts,
    async close() {
      await consumer.close()
      await relay.close()
      await pds.close()
      await plc.close()
      dir.remove()
    },
  }
}

/**
 * Wraps the relay's #commit verification: each call is recorded (its DID and whether it was asked against the
 * commit's claimed state), and the verdicts of the calls `hold` picks are held back until `release()` (at most
 * 5 s). `restore()` puts the verifier back.
 */
export function holdVerifications(relay: RelayServer, hold: (did: string, n: number) => boolean) {
  const verifier = relay.ctx.verifier
  const original = verifier.verifyCommitBytes
  const asked: { did: string; claimed: boolean }[] = []
  let release!: () => void
  const released = new Promise<void>((resolve) => (release = resolve))
  verifier.verifyCommitBytes = async function (did, body, ctx) {
    const verdict = original.call(this, did, body, ctx)
    const n = asked.push({ did, claimed: ctx.prev === 'claimed' })
    if (hold(did, n)) await Promise.race([released, sleep(5_000)])
    return verdict
  }
  return {
    asked,
    release,
    restore() {
      release()
      verifier.verifyCommitBytes = original
    },
  }
}
