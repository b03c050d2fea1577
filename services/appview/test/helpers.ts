/**
 * A small fake network for AppView tests: a did:plc directory serving DID documents, and a PDS that
 * keeps real signed repos (@atproto/repo), emits sync-1.1 #commit / #identity / #account / #sync events
 * on com.atproto.sync.subscribeRepos, and serves getRepo and getBlob. Plus an @atproto/api Agent that
 * signs a fresh service JWT as a given account for every request, like a PDS proxy does.
 */
import { randomBytes } from 'node:crypto'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { AddressInfo } from 'node:net'
import { Agent } from '@atproto/api'
import { Secp256k1Keypair } from '@atproto/crypto'
import { MemoryBlockstore, Repo, WriteOpAction, type CommitData, type RecordWriteOp } from '@atproto/repo'
import Fastify, { type FastifyInstance } from 'fastify'
import { CID } from 'multiformats/cid'
import { sql } from 'kysely'
import { createServiceJwt } from '@stratos/core/auth'
import { openPostgres } from '@stratos/core/db'
import { cidForCbor, cidForRawBytes, jsonToLex, lexToJson } from '@stratos/core/data'
import { commitSliceCar, writeCar, type CommitEventOp } from '@stratos/core/repo'
import { MemoryEventLog, SubscriptionServer, encodeMessageFrame, mountSubscription } from '@stratos/core/stream'
import { nextTid } from '@stratos/core/syntax'
import { AppViewServer } from '../src/server.js'
import type { AppViewConfig } from '../src/config.js'
import type { AppContextOptions } from '../src/context.js'

export interface Account {
  did: string
  handle: string
  keypair: Secp256k1Keypair
  storage: MemoryBlockstore
  repo: Repo
  /** PDS endpoint in the DID document (another fake PDS can be named) */
  pdsUrl: string
}

export interface WriteResult {
  uri: string
  cid: string
  seq: number
}

export type Json = Record<string, unknown>

function randomPlcDid(): string {
  const alphabet = 'abcdefghijklmnopqrstuvwxyz234567'
  const bytes = randomBytes(24)
  let id = ''
  for (const b of bytes) id += alphabet[b % 32]
  return `did:plc:${id}`
}

function toCid(c: { bytes: Uint8Array }): CID {
  return CID.decode(c.bytes)
}

export class FakeNetwork {
  readonly accounts = new Map<string, Account>()
  /** extra DID documents (feed generator services) */
  readonly serviceDocs = new Map<string, Json>()
  readonly blobs = new Map<string, { bytes: Uint8Array; mimeType: string }>()
  readonly eventLog = new MemoryEventLog()
  readonly subs: SubscriptionServer
  plcUrl = ''
  pdsUrl = ''
  /** the fake feed generator (served by the PDS app): feed URI → post URIs */
  readonly feeds = new Map<string, string[]>()
  /** Authorization headers the feed generator received */
  readonly feedAuth: (string | undefined)[] = []
  /** requests the PDS answered, by path (tests look at getRepo counts) */
  readonly requests: string[] = []
  /**
   * Runs before the DID directory answers for a DID (tests hold it back or make it fail): resolves to
   * false for a 503.
   */
  plcHook: ((did: string) => Promise<boolean>) | null = null

  private constructor(
    readonly plc: FastifyInstance,
    readonly pds: FastifyInstance,
  ) {
    this.subs = new SubscriptionServer({ log: this.eventLog, pingIntervalMs: 0 })
  }

  static async start(): Promise<FakeNetwork> {
    const net = new FakeNetwork(Fastify(), Fastify())
    net.routes()
    await net.plc.listen({ host: '127.0.0.1', port: 0 })
    await net.pds.listen({ host: '127.0.0.1', port: 0 })
    net.plcUrl = `http://127.0.0.1:${(net.plc.server.address() as AddressInfo).port}`
    net.pdsUrl = `http://127.0.0.1:${(net.pds.server.address() as AddressInfo).port}`
    return net
  }

  async close(): Promise<void> {
    await this.subs.close()
    await this.pds.close()
    await this.plc.close()
  }

  didDocument(acct: Account): Json {
    return {
      '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
      id: acct.did,
      alsoKnownAs: [`at://${acct.handle}`],
      verificationMethod: [
        { id: `${acct.did}#atproto`, type: 'Multikey', controller: acct.did, publicKeyMultibase: acct.keypair.did().slice('did:key:'.length) },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: acct.pdsUrl }],
    }
  }

  private routes(): void {
    this.plc.get('/:did', async (req, reply) => {
      const did = (req.params as { did: string }).did
      if (this.plcHook && !(await this.plcHook(did))) return reply.code(503).send({ message: 'directory unavailable' })
      const service = this.serviceDocs.get(did)
      if (service) return service
      const acct = this.accounts.get(did)
      if (!acct) return reply.code(404).send({ message: 'DID not registered' })
      return this.didDocument(acct)
    })
    mountSubscription(this.pds, 'com.atproto.sync.subscribeRepos', (ws, _req, params) => {
      this.subs.attach(ws, { cursor: params.cursor })
    })
    this.pds.get('/xrpc/com.atproto.sync.getRepo', async (req, reply) => {
      this.requests.push('getRepo')
      const acct = this.accounts.get((req.query as { did?: string }).did ?? '')
      if (!acct) return reply.code(400).send({ error: 'RepoNotFound', message: 'not found' })
      const blocks = [...acct.storage.blocks].map(([cid, bytes]) => ({ cid, bytes }))
      reply.header('content-type', 'application/vnd.ipld.car')
      return Buffer.from(writeCar(toCid(acct.repo.cid), blocks))
    })
    this.pds.get('/xrpc/app.bsky.feed.describeFeedGenerator', async () => ({
      did: 'did:web:unused.test',
      feeds: [...this.feeds.keys()].map((uri) => ({ uri })),
    }))
    this.pds.get('/xrpc/app.bsky.feed.getFeedSkeleton', async (req, reply) => {
      const q = req.query as { feed?: string; limit?: string; cursor?: string }
      this.feedAuth.push(req.headers.authorization)
      const posts = this.feeds.get(q.feed ?? '')
      if (!posts) return reply.code(400).send({ error: 'UnknownFeed', message: 'no such feed' })
      const start = q.cursor ? Number(q.cursor) : 0
      const limit = Number(q.limit ?? 50)
      const page = posts.slice(start, start + limit)
      return {
        feed: page.map((post, i) => ({ post, feedContext: `ctx-${start + i}` })),
        cursor: start + limit < posts.length ? String(start + limit) : undefined,
      }
    })
    this.pds.get('/xrpc/com.atproto.sync.getBlob', async (req, reply) => {
      this.requests.push('getBlob')
      const q = req.query as { did?: string; cid?: string }
      const blob = this.blobs.get(`${q.did} ${q.cid}`)
      if (!blob) return reply.code(400).send({ error: 'BlobNotFound', message: 'not found' })
      reply.header('content-type', blob.mimeType)
      return Buffer.from(blob.bytes)
    })
  }

  /** Registers a DID document for a service (e.g. a feed generator with #bsky_fg at `endpoint`). */
  registerService(id: string, type: string, endpoint: string): string {
    const did = randomPlcDid()
    this.serviceDocs.set(did, { id: did, alsoKnownAs: [], verificationMethod: [], service: [{ id, type, serviceEndpoint: endpoint }] })
    return did
  }

  /** TXT lookups for handles (what the AppView's identity resolver is given instead of DNS). */
  resolveTxt = async (name: string): Promise<string[][]> => {
    for (const acct of this.accounts.values()) if (name === `_atproto.${acct.handle}`) return [[`did=${acct.did}`]]
    const err = new Error(`queryTxt ENOTFOUND ${name}`) as Error & { code: string }
    err.code = 'ENOTFOUND'
    throw err
  }

  private publish(t: string, body: (seq: number) => Json): number {
    const evt = this.eventLog.append((seq) => encodeMessageFrame(t, body(seq)))
    this.subs.publish(evt.seq, evt.frame)
    return evt.seq
  }

  /** A new account: DID registered, repo created, #identity + #account (unless commitOnly) + the first (empty) #commit. */
  async createAccount(handle: string, opts: { silent?: boolean; commitOnly?: boolean } = {}): Promise<Account> {
    const keypair = await Secp256k1Keypair.create({ exportable: true })
    const did = randomPlcDid()
    const storage = new MemoryBlockstore()
    const repo = await Repo.create(storage, did, keypair)
    const acct: Account = { did, handle, keypair, storage, repo, pdsUrl: this.pdsUrl }
    this.accounts.set(did, acct)
    if (!opts.silent) {
      if (!opts.commitOnly) {
        this.emitIdentity(acct)
        this.emitAccount(acct, true)
      }
      const blocks = [...storage.blocks].map(([cid, bytes]) => ({ cid, bytes }))
      this.publish('#commit', (seq) => ({
        seq,
        rebase: false,
        tooBig: false,
        repo: did,
        commit: toCid(repo.cid),
        rev: repo.commit.rev,
        since: null,
        blocks: writeCar(toCid(repo.cid), blocks),
        ops: [],
        blobs: [],
        time: new Date().toISOString(),
      }))
    }
    return acct
  }

  emitIdentity(acct: Account): number {
    return this.publish('#identity', (seq) => ({ seq, did: acct.did, time: new Date().toISOString(), handle: acct.handle }))
  }

  emitAccount(acct: Account, active: boolean, status?: string): number {
    return this.publish('#account', (seq) => ({ seq, did: acct.did, time: new Date().toISOString(), active, ...(status ? { status } : {}) }))
  }

  /** #sync with the current commit (after a silent change of the repo). */
  emitSync(acct: Account): number {
    const commitCid = toCid(acct.repo.cid)
    const bytes = acct.storage.blocks.get(acct.repo.cid)!
    return this.publish('#sync', (seq) => ({
      seq,
      did: acct.did,
      rev: acct.repo.commit.rev,
      blocks: writeCar(commitCid, [{ cid: commitCid, bytes }]),
      time: new Date().toISOString(),
    }))
  }

  /** Uploads a blob (kept by the PDS for getBlob); returns its JSON blob ref. */
  addBlob(acct: Account, bytes: Uint8Array, mimeType: string): Json {
    const cid = cidForRawBytes(bytes)
    this.blobs.set(`${acct.did} ${cid.toString()}`, { bytes, mimeType })
    return { $type: 'blob', ref: { $link: cid.toString() }, mimeType, size: bytes.byteLength }
  }

  /**
   * Applies writes (records in JSON form) as one commit. `emit: false` changes the repo without an
   * event (to test resyncs); `tamper` edits the event before it goes out.
   */
  async write(
    acct: Account,
    writes: { action: 'create' | 'update' | 'delete'; collection: string; rkey: string; record?: Json }[],
    opts: { emit?: boolean; keypair?: Secp256k1Keypair; tamper?: (evt: Json) => void } = {},
  ): Promise<number> {
    const ops: CommitEventOp[] = []
    const repoWrites: RecordWriteOp[] = []
    for (const w of writes) {
      const path = `${w.collection}/${w.rkey}`
      const prevCid = await acct.repo.data.get(path)
      const prev = prevCid ? toCid(prevCid) : null
      if (w.action === 'delete') {
        ops.push({ action: 'delete', path, cid: null, prev })
        repoWrites.push({ action: WriteOpAction.Delete, collection: w.collection, rkey: w.rkey } as RecordWriteOp)
      } else {
        const lex = jsonToLex(w.record) as Json
        const cid = cidForCbor(lex)
        ops.push(w.action === 'create' ? { action: 'create', path, cid } : { action: 'update', path, cid, prev })
        repoWrites.push({
          action: w.action === 'create' ? WriteOpAction.Create : WriteOpAction.Update,
          collection: w.collection,
          rkey: w.rkey,
          record: lex,
        } as RecordWriteOp)
      }
    }
    const prevData = toCid(acct.repo.commit.data)
    const commit: CommitData = await acct.repo.formatCommit(repoWrites, opts.keypair ?? acct.keypair)
    acct.repo = await acct.repo.applyCommit(commit)
    if (opts.emit === false) return (await this.eventLog.latestSeq()) ?? 0
    return this.publish('#commit', (seq) => {
      const evt: Json = {
        seq,
        rebase: false,
        tooBig: false,
        repo: acct.did,
        commit: toCid(commit.cid),
        rev: commit.rev,
        since: commit.since,
        blocks: commitSliceCar(commit),
        ops,
        blobs: [],
        prevData,
        time: new Date().toISOString(),
      }
      opts.tamper?.(evt)
      return evt
    })
  }

  /** Creates one record; returns its URI, CID and the event's seq. */
  async create(acct: Account, collection: string, record: Json, rkey = nextTid()): Promise<WriteResult> {
    const full = { $type: collection, ...record }
    const seq = await this.write(acct, [{ action: 'create', collection, rkey, record: full }])
    return { uri: `at://${acct.did}/${collection}/${rkey}`, cid: cidForCbor(jsonToLex(full)).toString(), seq }
  }

  async update(acct: Account, uri: string, record: Json): Promise<WriteResult> {
    const [collection, rkey] = uri.split('/').slice(3) as [string, string]
    const full = { $type: collection, ...record }
    const seq = await this.write(acct, [{ action: 'update', collection, rkey, record: full }])
    return { uri, cid: cidForCbor(jsonToLex(full)).toString(), seq }
  }

  async delete(acct: Account, uri: string): Promise<number> {
    const [collection, rkey] = uri.split('/').slice(3) as [string, string]
    return this.write(acct, [{ action: 'delete', collection, rkey }])
  }

  /** The record stored in the account's repo, in JSON form. */
  async getRecord(acct: Account, uri: string): Promise<Json | null> {
    const [collection, rkey] = uri.split('/').slice(3) as [string, string]
    const rec = await acct.repo.getRecord(collection, rkey)
    return rec ? (lexToJson(rec) as Json) : null
  }
}

// record builders
// =

let lastMs = 0
/** Strictly increasing timestamps, so records created in a row never tie in sort order. */
export const now = (): string => {
  lastMs = Math.max(Date.now(), lastMs + 1)
  return new Date(lastMs).toISOString()
}

export function ref(w: { uri: string; cid: string }) {
  return { uri: w.uri, cid: w.cid }
}

export function post(text: string, extra: Json = {}): Json {
  return { text, createdAt: now(), ...extra }
}

export function reply(text: string, root: { uri: string; cid: string }, parent: { uri: string; cid: string }, extra: Json = {}): Json {
  return post(text, { reply: { root: ref(root), parent: ref(parent) }, ...extra })
}

export function quote(text: string, subject: { uri: string; cid: string }): Json {
  return post(text, { embed: { $type: 'app.bsky.embed.record', record: ref(subject) } })
}

export function mention(text: string, handle: string, did: string): Json {
  const start = Buffer.byteLength(text.slice(0, text.indexOf(`@${handle}`)), 'utf8')
  const end = start + Buffer.byteLength(`@${handle}`, 'utf8')
  return post(text, {
    facets: [{ index: { byteStart: start, byteEnd: end }, features: [{ $type: 'app.bsky.richtext.facet#mention', did }] }],
  })
}

export const like = (subject: { uri: string; cid: string }): Json => ({ subject: ref(subject), createdAt: now() })
export const repost = like
export const follow = (did: string): Json => ({ subject: did, createdAt: now() })
export const block = follow

// AppView
// =

export interface TestDb {
  dialect: 'sqlite' | 'postgres'
  dbUrl: string
  dbSchema?: string
  dataDir: string
  cleanup(): Promise<void>
}

export const PG_URL = process.env.STRATOS_TEST_PG_URL

/** A fresh database: a SQLite file in a temp dir, or an isolated PostgreSQL schema dropped on cleanup. */
export async function testDb(dialect: 'sqlite' | 'postgres'): Promise<TestDb> {
  const dataDir = mkdtempSync(join(tmpdir(), 'appview-test-'))
  if (dialect === 'sqlite') {
    return { dialect, dbUrl: join(dataDir, 'appview.sqlite'), dataDir, cleanup: async () => rmSync(dataDir, { recursive: true, force: true }) }
  }
  if (!PG_URL) throw new Error('STRATOS_TEST_PG_URL is not set')
  const schema = `appview_test_${process.pid}_${randomBytes(4).toString('hex')}`
  return {
    dialect,
    dbUrl: PG_URL,
    dbSchema: schema,
    dataDir,
    cleanup: async () => {
      const admin = await openPostgres(PG_URL, { poolSize: 1 })
      try {
        await sql.raw(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`).execute(admin.db)
      } finally {
        await admin.close()
        rmSync(dataDir, { recursive: true, force: true })
      }
    },
  }
}

export function appviewConfig(net: FakeNetwork, db: TestDb, extra: Partial<AppViewConfig> = {}): AppViewConfig {
  const config: AppViewConfig = {
    port: 0,
    host: '127.0.0.1',
    dataDirectory: db.dataDir,
    dbUrl: db.dbUrl,
    plcUrl: net.plcUrl,
    pdsUrls: [net.pdsUrl],
    devMode: true,
    logLevel: 'silent',
    version: 'test',
    validateOutput: true,
    adminPassword: 'admin-secret',
    labelers: [],
    labelerRefreshMs: 30_000,
    ...extra,
  }
  if (db.dbSchema) config.dbSchema = db.dbSchema
  return config
}

export async function startAppView(
  net: FakeNetwork,
  db: TestDb,
  extra: Partial<AppViewConfig> = {},
  options: Pick<AppContextOptions, 'ingest'> = {},
): Promise<AppViewServer> {
  const server = await AppViewServer.create(appviewConfig(net, db, extra), {
    ...options,
    identityOptions: {
      resolveTxt: (name) => net.resolveTxt(name),
      // no real DNS in tests: only loopback resolves
      lookup: async (host) => {
        if (host === '127.0.0.1' || host === 'localhost') return [{ address: '127.0.0.1', family: 4 }]
        throw new Error(`getaddrinfo ENOTFOUND ${host}`)
      },
    },
    minBackoffMs: 50,
    maxBackoffMs: 200,
  })
  await server.start()
  await waitFor(() => server.ctx.ingester.connected, 10_000, 'the AppView to subscribe')
  return server
}

/** Waits until the AppView has processed the event `seq` of the fake PDS. */
export async function caughtUp(server: AppViewServer, net: FakeNetwork, seq?: number): Promise<void> {
  const target = seq ?? (await net.eventLog.latestSeq()) ?? 0
  await waitForAsync(async () => ((await server.ctx.ingester.getCursor(net.pdsUrl)) ?? 0) >= target, 15_000, `seq ${target}`)
}

export async function waitFor(pred: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  return waitForAsync(async () => pred(), timeoutMs, what)
}

export async function waitForAsync(pred: () => Promise<boolean>, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const start = Date.now()
  while (!(await pred())) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 15))
  }
}

/** An @atproto/api Agent talking to the AppView; with `as`, every request carries a fresh service JWT. */
export function agentFor(server: AppViewServer, as?: Account, opts: { aud?: string; lxm?: string; expired?: boolean } = {}): Agent {
  const base = server.url
  return new Agent(async (path: string, init: RequestInit) => {
    const headers = new Headers(init.headers)
    if (as) {
      const nsid = new URL(path, base).pathname.replace('/xrpc/', '')
      const iat = Math.floor(Date.now() / 1000) - (opts.expired ? 600 : 0)
      const jwt = await createServiceJwt({
        iss: as.did,
        aud: opts.aud ?? `${server.did}#bsky_appview`,
        lxm: opts.lxm ?? nsid,
        keypair: as.keypair,
        iat,
        ...(opts.expired ? { exp: iat + 60 } : {}),
      })
      headers.set('authorization', `Bearer ${jwt}`)
    }
    return fetch(new URL(path, base), { ...init, headers })
  })
}

export async function expectXrpcError(p: Promise<unknown>, error: string, status?: number): Promise<void> {
  try {
    await p
  } catch (err) {
    const e = err as { error?: string; status?: number; message?: string }
    if (e.error !== error) throw new Error(`expected XRPC error ${error}, got ${e.error} (${e.status}): ${e.message}`)
    if (status !== undefined && e.status !== status) throw new Error(`expected status ${status}, got ${e.status}`)
    return
  }
  throw new Error(`expected XRPC error ${error}, but the call succeeded`)
}

/** Holds the DID directory's answers for one DID until released (tests of new accounts whose identity is slow). */
export function holdDirectory(net: FakeNetwork, did: () => string | undefined): { release: () => void; held: () => number } {
  let release: () => void = () => undefined
  const gate = new Promise<void>((resolve) => (release = resolve))
  let held = 0
  net.plcHook = async (d) => {
    if (d === did()) {
      held++
      await gate
    }
    return true
  }
  return { release, held: () => held }
}

/** Posts indexed of an account. */
export async function postCount(server: AppViewServer, did: string): Promise<number> {
  const row = await server.ctx.db.selectFrom('post').select((eb) => eb.fn.countAll().as('n')).where('creator', '=', did).executeTakeFirst()
  return Number(row?.n ?? 0)
}
