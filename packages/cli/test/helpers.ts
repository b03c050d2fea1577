/**
 * Test helpers: in-process CLI runs with captured output, a subprocess runner, small HTTP servers, and a
 * real signed repo (built with @atproto/repo) served by a fake PLC directory and a fake PDS.
 */
import { spawn } from 'node:child_process'
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { PassThrough } from 'node:stream'
import { fileURLToPath } from 'node:url'
import { Secp256k1Keypair, type Keypair } from '@atproto/crypto'
import { MemoryBlockstore, Repo, WriteOpAction, getFullRepo, type RecordCreateOp, type RecordWriteOp } from '@atproto/repo'
import { CID } from 'multiformats/cid'
import { cidForCbor, cidForRawBytes } from '@stratos/core/data'
import { commitSliceCar, concatChunks, type CommitEvent } from '@stratos/core/repo'
import { main } from '../src/main.js'
import type { Io } from '../src/util/io.js'

export const ROOT = fileURLToPath(new URL('../../../', import.meta.url))

// ---------------------------------------------------------------------------------------------
// running the CLI

export interface RunResult {
  code: number
  stdout: string
  stderr: string
}

function collector(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough()
  const chunks: Buffer[] = []
  stream.on('data', (c: Buffer) => chunks.push(c))
  return { stream, text: () => Buffer.concat(chunks).toString('utf8') }
}

/** Runs `stratos <argv>` in this process; the environment is only what `env` gives (no process.env). */
export async function runCli(
  argv: string[],
  opts: { env?: Record<string, string>; signal?: AbortSignal; confirm?: Io['confirm'] } = {},
): Promise<RunResult> {
  const out = collector()
  const err = collector()
  const io: Io = { stdout: out.stream, stderr: err.stream, env: opts.env ?? {}, signal: opts.signal, confirm: opts.confirm }
  const code = await main(argv, io)
  await new Promise((r) => setImmediate(r))
  return { code, stdout: out.text(), stderr: err.text() }
}

/** Starts the CLI as a user would, in a child process (`node --import tsx … packages/cli/src/bin.ts`). */
export function spawnBin(argv: string[], env: Record<string, string> = {}) {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', './packages/cli/dev/register.mjs', 'packages/cli/src/bin.ts', ...argv],
    { cwd: ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const out: Buffer[] = []
  const err: Buffer[] = []
  child.stdout.on('data', (c: Buffer) => out.push(c))
  child.stderr.on('data', (c: Buffer) => err.push(c))
  const done = new Promise<RunResult>((resolve, reject) => {
    child.on('error', reject)
    child.on('close', (code) =>
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') }),
    )
  })
  return { child, done, stdout: () => Buffer.concat(out).toString('utf8') }
}

export function runBin(argv: string[], env: Record<string, string> = {}): Promise<RunResult> {
  return spawnBin(argv, env).done
}

export function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

// ---------------------------------------------------------------------------------------------
// HTTP servers

export interface RecordedRequest {
  method: string
  path: string
  query: URLSearchParams
  headers: http.IncomingHttpHeaders
  body: unknown
}

export type Handler = (req: RecordedRequest, res: http.ServerResponse) => unknown

export interface TestServer {
  url: string
  requests: RecordedRequest[]
  close(): Promise<void>
}

export async function startServer(handler: Handler): Promise<TestServer> {
  const requests: RecordedRequest[] = []
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const u = new URL(req.url ?? '/', 'http://x')
      const raw = Buffer.concat(chunks).toString('utf8')
      let body: unknown = raw.length > 0 ? raw : undefined
      if (raw.length > 0 && (req.headers['content-type'] ?? '').includes('json')) body = JSON.parse(raw)
      const rec: RecordedRequest = { method: req.method ?? 'GET', path: u.pathname, query: u.searchParams, headers: req.headers, body }
      requests.push(rec)
      Promise.resolve(handler(rec, res)).catch((err) => {
        res.statusCode = 500
        res.end(JSON.stringify({ error: 'InternalServerError', message: String(err) }))
      })
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  res.statusCode = status
  res.setHeader('content-type', 'application/json')
  res.end(JSON.stringify(body))
}

export function xrpcError(res: http.ServerResponse, status: number, error: string, message: string): void {
  sendJson(res, status, { error, message })
}

// ---------------------------------------------------------------------------------------------
// a real repo

export const DID = 'did:plc:abcdefghijklmnopqrstuvwx'
export const HANDLE = 'alice.test'

export function createOp(collection: string, rkey: string, record: Record<string, unknown>): RecordCreateOp {
  return { action: WriteOpAction.Create, collection, rkey, record } as RecordCreateOp
}

export const toCid = (c: { bytes: Uint8Array }): CID => CID.decode(c.bytes)

export interface RepoFixture {
  did: string
  keypair: Keypair
  repo: Repo
  storage: MemoryBlockstore
  /** full repo CAR (getRepo) */
  car: Uint8Array
  postRkey: string
}

/** A repo with a profile, two posts and a follow, signed by a fresh k256 key. */
export async function buildRepo(did = DID): Promise<RepoFixture> {
  const keypair = await Secp256k1Keypair.create({ exportable: true })
  const storage = new MemoryBlockstore()
  const createdAt = '2024-05-01T12:00:00.000Z'
  const repo = await Repo.create(storage, did, keypair, [
    createOp('app.bsky.actor.profile', 'self', { $type: 'app.bsky.actor.profile', displayName: 'Alice' }),
    createOp('app.bsky.feed.post', '3kaaaaaaaaa22', { $type: 'app.bsky.feed.post', text: 'hello world', createdAt }),
    createOp('app.bsky.feed.post', '3kaaaaaaaaa23', { $type: 'app.bsky.feed.post', text: 'second post', createdAt }),
    createOp('app.bsky.graph.follow', '3kaaaaaaaaa24', {
      $type: 'app.bsky.graph.follow',
      subject: 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb',
      createdAt,
    }),
  ])
  const car = await concatChunks(getFullRepo(storage, repo.cid))
  return { did, keypair, repo, storage, car, postRkey: '3kaaaaaaaaa22' }
}

/** The `#commit` body a sync-1.1 host would emit for `writes`, signed with `signer` (default: the repo's key). */
export async function commitEvent(
  fx: RepoFixture,
  writes: RecordWriteOp[],
  seq: number,
  signer: Keypair = fx.keypair,
): Promise<CommitEvent & { seq: number; time: string }> {
  const ops: CommitEvent['ops'] = []
  for (const w of writes) {
    const path = `${w.collection}/${w.rkey}`
    const prevCid = await fx.repo.data.get(path)
    if (w.action === WriteOpAction.Create) ops.push({ action: 'create', path, cid: cidForCbor(w.record) })
    else if (w.action === WriteOpAction.Update) ops.push({ action: 'update', path, cid: cidForCbor(w.record), prev: prevCid ? toCid(prevCid) : null })
    else ops.push({ action: 'delete', path, cid: null, prev: prevCid ? toCid(prevCid) : null })
  }
  const prevData = toCid(fx.repo.commit.data)
  const commitData = await fx.repo.formatCommit(writes, signer)
  const evt = {
    seq,
    rebase: false,
    tooBig: false,
    repo: fx.did,
    commit: toCid(commitData.cid),
    rev: commitData.rev,
    since: commitData.since,
    blocks: commitSliceCar(commitData),
    ops,
    blobs: [],
    prevData,
    time: new Date().toISOString(),
  }
  if (signer === fx.keypair) fx.repo = await fx.repo.applyCommit(commitData)
  return evt
}

export function didDocument(did: string, handle: string, signingKey: string, pds: string): Record<string, unknown> {
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
    id: did,
    alsoKnownAs: [`at://${handle}`],
    verificationMethod: [
      { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: signingKey.slice('did:key:'.length) },
    ],
    service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: pds }],
  }
}

/** A PLC directory serving one DID document (the PDS URL may be set after the PDS starts). */
export async function startPlc(fx: RepoFixture, handle = HANDLE): Promise<TestServer & { pds: string }> {
  const state = { pds: 'http://127.0.0.1:1' }
  const server = await startServer((req, res) => {
    if (req.method === 'GET' && decodeURIComponent(req.path.slice(1)) === fx.did) {
      sendJson(res, 200, didDocument(fx.did, handle, fx.keypair.did(), state.pds))
    } else {
      sendJson(res, 404, { message: 'DID not registered' })
    }
  })
  Object.defineProperty(server, 'pds', {
    get: () => state.pds,
    set: (v: string) => {
      state.pds = v
    },
  })
  return server as TestServer & { pds: string }
}

export interface FakePdsOptions {
  fx: RepoFixture
  handle?: string
  blobs?: Map<string, Uint8Array>
  /** bytes served for a blob instead of the real ones (corruption) */
  serveBlob?: (cid: string, bytes: Uint8Array) => Uint8Array
}

/** Blob bytes keyed by their CID (raw codec, as a PDS stores them). */
export function makeBlobs(contents: string[]): Map<string, Uint8Array> {
  const m = new Map<string, Uint8Array>()
  for (const c of contents) {
    const bytes = new TextEncoder().encode(c)
    m.set(cidForRawBytes(bytes).toString(), bytes)
  }
  return m
}

/** A PDS serving the fixture: handle well-known, describeRepo, getRecord, listRecords, getRepo, listBlobs (2 per page), getBlob. */
export async function startFakePds(opts: FakePdsOptions): Promise<TestServer> {
  const { fx } = opts
  const handle = opts.handle ?? HANDLE
  const blobs = opts.blobs ?? new Map<string, Uint8Array>()
  return startServer(async (req, res) => {
    const q = req.query
    switch (req.path) {
      case '/.well-known/atproto-did':
        if ((req.headers.host ?? '').split(':')[0] === handle) {
          res.setHeader('content-type', 'text/plain')
          res.end(fx.did)
        } else {
          res.statusCode = 404
          res.end('no such handle')
        }
        return
      case '/xrpc/com.atproto.identity.resolveHandle':
        if (q.get('handle') === handle) sendJson(res, 200, { did: fx.did })
        else xrpcError(res, 400, 'HandleNotFound', 'Unable to resolve handle')
        return
      case '/xrpc/com.atproto.repo.describeRepo': {
        if (q.get('repo') !== fx.did && q.get('repo') !== handle) return xrpcError(res, 400, 'RepoNotFound', 'Could not find repo')
        const collections = new Set<string>()
        for (const e of await fx.repo.data.list()) collections.add(e.key.split('/')[0]!)
        sendJson(res, 200, { handle, did: fx.did, didDoc: {}, collections: [...collections], handleIsCorrect: true })
        return
      }
      case '/xrpc/com.atproto.repo.getRecord': {
        const rec = await fx.repo.getRecord(q.get('collection') ?? '', q.get('rkey') ?? '')
        if (!rec) return xrpcError(res, 400, 'RecordNotFound', `Could not locate record`)
        const cid = await fx.repo.data.get(`${q.get('collection')}/${q.get('rkey')}`)
        sendJson(res, 200, { uri: `at://${fx.did}/${q.get('collection')}/${q.get('rkey')}`, cid: cid?.toString(), value: rec })
        return
      }
      case '/xrpc/com.atproto.repo.listRecords': {
        const coll = q.get('collection') ?? ''
        const records = []
        for (const e of await fx.repo.data.list()) {
          if (!e.key.startsWith(`${coll}/`)) continue
          const rkey = e.key.slice(coll.length + 1)
          records.push({ uri: `at://${fx.did}/${e.key}`, cid: e.value.toString(), value: await fx.repo.getRecord(coll, rkey) })
        }
        sendJson(res, 200, { records })
        return
      }
      case '/xrpc/com.atproto.sync.getRepo':
        if (q.get('did') !== fx.did) return xrpcError(res, 404, 'RepoNotFound', `Could not find repo for DID: ${q.get('did')}`)
        res.setHeader('content-type', 'application/vnd.ipld.car')
        res.setHeader('content-length', String(fx.car.byteLength))
        res.end(Buffer.from(fx.car))
        return
      case '/xrpc/com.atproto.sync.listBlobs': {
        const all = [...blobs.keys()].sort()
        const cursor = q.get('cursor')
        const start = cursor ? all.findIndex((c) => c > cursor) : 0
        const page = start === -1 ? [] : all.slice(start, start + 2)
        sendJson(res, 200, { cids: page, ...(page.length > 0 ? { cursor: page[page.length - 1] } : {}) })
        return
      }
      case '/xrpc/com.atproto.sync.getBlob': {
        const cid = q.get('cid') ?? ''
        const bytes = blobs.get(cid)
        if (!bytes) return xrpcError(res, 400, 'BlobNotFound', 'Blob not found')
        res.setHeader('content-type', 'application/octet-stream')
        res.end(Buffer.from(opts.serveBlob ? opts.serveBlob(cid, bytes) : bytes))
        return
      }
      default:
        xrpcError(res, 501, 'MethodNotImplemented', `not here: ${req.path}`)
    }
  })
}

/** PLC + PDS for one account, wired together; `flags` are the identity flags for --dev use. */
export async function startNetwork(opts: Omit<FakePdsOptions, 'fx'> & { fx?: RepoFixture } = {}) {
  const fx = opts.fx ?? (await buildRepo())
  const plc = await startPlc(fx, opts.handle)
  const pds = await startFakePds({ ...opts, fx })
  plc.pds = pds.url
  return {
    fx,
    plc,
    pds,
    flags: ['--dev', '--plc', plc.url, '--handle-resolver', pds.url],
    close: async () => {
      await pds.close()
      await plc.close()
    },
  }
}

export { WriteOpAction }
