/**
 * AppView at size: network backfill from a fake PDS serving real signed repos (CAR files generated once
 * and cached under bench/.cache/, git-ignored), then live single-op commits over a WebSocket, then reads
 * at concurrency 16 on the loaded dataset. The fake network (PLC, PDS, the live publisher: bench/lib/appview-network.ts)
 * runs in a child process, the reads' load generator in another; the AppView (from source) runs in this one, so this
 * process's CPU is the AppView's.
 *
 *   node --import tsx bench/appview.ts [--repos 2000] [--records 25] [--live 5000] [--reads 200]
 *   (the issue's full size: --repos 2000 --records 500 --live 20000; generating it takes long here)
 *
 * Backfill runs on SQLite, and on PostgreSQL too when STRATOS_TEST_PG_URL is set. Records per repo are
 * posts 30 %, likes 40 %, reposts 15 %, follows 15 %; likes and reposts point at other repos' posts.
 * Account 0 (the reads' viewer) also follows up to 1,000 others; accounts 1-200 reply once to its first
 * post (a thread of up to 200 replies). Live: single-op commits of new accounts replayed at full speed
 * (commits/s, CPU per commit), then a second set paced at a fixed rate (lag from publish to indexed,
 * p50/p99), then @atproto/sync's verifying Firehose on the first set's frames (the stock consumer).
 * Prints a table and rewrites the "appview" section of bench/RESULTS.md.
 */
import './lib/register.js'
import { spawn, type ChildProcess } from 'node:child_process'
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { writeResultsSection } from './results.js'
import { threadTimes } from './lib/thread-cpu.js'

const { importKeypair } = await import('../packages/core/src/crypto/index.js')
const { cidForCbor } = await import('../packages/core/src/data/index.js')
const { createServiceJwt } = await import('../packages/core/src/auth/index.js')
const { openPostgres } = await import('../packages/core/src/db/index.js')
const { AppViewServer } = (await import('../services/appview/src/index.js')) as typeof import('../services/appview/src/index.js')
const appviewRequire = createRequire(new URL('../services/appview/package.json', import.meta.url))

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const REPOS = arg('repos', 2000)
const RECORDS = arg('records', 25)
const LIVE = arg('live', 5000)
const READS = arg('reads', 200)
const PACED = arg('paced-rate', 200)
const PG_URL = process.env.STRATOS_TEST_PG_URL
const READ_WORKERS = Number(process.env.BENCH_READ_WORKERS ?? 2)
/** BENCH_READS_LIVE=rate: during each read method's run, live commits (posts of new accounts) published at that rate (commits/s): reads as an AppView under live ingest serves them */
const READS_LIVE = Number(process.env.BENCH_READS_LIVE ?? 0)
/**
 * BENCH_READS_VIEWERS=n: the authenticated requests of each read method spread over n viewers (request i by viewer
 * i mod n), each following 1,000 accounts (viewer 0 from the dataset, the others given follows indexed before the
 * reads); getPostThread is then asked as a viewer too. Unset: one viewer, getPostThread unauthenticated (as before).
 */
const READS_VIEWERS = process.env.BENCH_READS_VIEWERS === undefined ? 0 : Number(process.env.BENCH_READS_VIEWERS)
if (!Number.isInteger(READS_VIEWERS) || READS_VIEWERS < 0) throw new Error(`BENCH_READS_VIEWERS must be an integer >= 1, got ${process.env.BENCH_READS_VIEWERS}`)
/** BENCH_READS_WARMUP=n: requests of each read method before the measured ones (default 400) */
const READS_WARMUP = Number(process.env.BENCH_READS_WARMUP ?? 400)
if (!Number.isInteger(READS_WARMUP) || READS_WARMUP < 0) throw new Error(`BENCH_READS_WARMUP must be an integer >= 0, got ${process.env.BENCH_READS_WARMUP}`)
if (!Number.isFinite(READS_LIVE) || READS_LIVE < 0) throw new Error(`BENCH_READS_LIVE must be a rate >= 0, got ${process.env.BENCH_READS_LIVE}`)
/** `--only backfill,live,paced,reads,firehose,pg` (any of them): just those phases (for profiles); RESULTS.md is not rewritten */
const ONLY = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--only' ? a.split(',') : []))
const want = (phase: string) => ONLY.length === 0 || ONLY.includes(phase)

interface Manifest {
  accounts: { did: string; keyHex: string; rev: string; records: number }[]
}

const wallNow = () => performance.timeOrigin + performance.now()
const iso = (ms: number) => new Date(ms).toISOString()

const children = new Set<ChildProcess>()
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL')
})

/** The fake network in its own process (bench/lib/appview-network.ts), driven over JSON lines. */
async function startNetwork() {
  const proc = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(new URL('./lib/appview-network.ts', import.meta.url)), '--repos', String(REPOS), '--records', String(RECORDS)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  children.add(proc)
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)))
  const waiters: ((v: any) => void)[] = []
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    let v: unknown
    try {
      v = JSON.parse(line)
    } catch {
      process.stderr.write(`[network] ${line}\n`)
      return
    }
    waiters.shift()?.(v)
  })
  const next = <T>() =>
    new Promise<T>((resolve, reject) => {
      waiters.push(resolve)
      void exited.then((code) => reject(new Error(`the network process exited (${code})`)))
    })
  let id = 0
  const ask = <T>(msg: Record<string, unknown>) => {
    const answer = next<T>()
    proc.stdin!.write(`${JSON.stringify({ ...msg, id: ++id })}\n`)
    return answer
  }
  const ready = await next<{ plcUrl: string; pdsUrl: string; cache: string }>()
  const manifest = JSON.parse(readFileSync(join(ready.cache, 'manifest.json'), 'utf8')) as Manifest
  return {
    plcUrl: ready.plcUrl,
    pdsUrl: ready.pdsUrl,
    manifest,
    pid: proc.pid!,
    /** single-op commits of `accounts` new accounts, built in the network process */
    live: (accounts: number, total: number) => ask<{ set: number; dids: string[]; commits: number }>({ cmd: 'live', accounts, total }),
    burst: (set: number) => ask<{ first: number; last: number }>({ cmd: 'burst', set }),
    paced: (set: number, rate: number) => ask<{ published: [number, number][] }>({ cmd: 'paced', set, rate }),
    async close() {
      proc.stdin!.write(`${JSON.stringify({ cmd: 'close' })}\n`)
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))])
      if (proc.exitCode === null) proc.kill('SIGKILL')
    },
  }
}

type Network = Awaited<ReturnType<typeof startNetwork>>

/** BENCH_PROFILE=dir: a CPU profile of the main thread per phase (backfill, live, and each read method) written there. */
async function profiled<T>(name: string, fn: () => Promise<T>): Promise<T> {
  const dir = process.env.BENCH_PROFILE
  if (!dir) return fn()
  const { Session } = await import('node:inspector/promises')
  const { writeFileSync, mkdirSync } = await import('node:fs')
  const session = new Session()
  session.connect()
  await session.post('Profiler.enable')
  await session.post('Profiler.start')
  try {
    return await fn()
  } finally {
    const { profile } = await session.post('Profiler.stop')
    mkdirSync(dir, { recursive: true })
    writeFileSync(join(dir, `${name}.cpuprofile`), JSON.stringify(profile))
    session.disconnect()
  }
}

/** CPU µs so far of this process's threads: the main thread, verification workers (commits and repos), the rest (GC, libuv). */
function threadCpu(): { main: number; workers: number; other: number; byName: Map<string, number> } {
  const out = { main: 0, workers: 0, other: 0, byName: new Map<string, number>() }
  for (const t of threadTimes()) {
    const name = t.main ? 'main' : t.name
    out.byName.set(name, (out.byName.get(name) ?? 0) + t.us)
    if (t.main) out.byName.set('main (system)', (out.byName.get('main (system)') ?? 0) + t.sysUs)
    if (t.main) out.main += t.us
    else if (t.name.startsWith('verify-') || t.name.startsWith('repo-verify-')) out.workers += t.us
    else out.other += t.us
  }
  return out
}

/** Per-thread CPU per event between two threadCpu() readings. */
function cpuSplit(a: ReturnType<typeof threadCpu>, b: ReturnType<typeof threadCpu>, n: number): string {
  const f = (k: 'main' | 'workers' | 'other') => Math.round((b[k] - a[k]) / Math.max(1, n))
  // BENCH_THREADS=1: every thread name's share too (the "other" threads: V8's platform threads, libuv, the checkpointer)
  if (process.env.BENCH_THREADS) {
    const per = [...b.byName].map(([name, us]) => [name, Math.round((us - (a.byName.get(name) ?? 0)) / Math.max(1, n))] as const).filter(([, us]) => us > 0)
    console.log(`CPU µs per event by thread name: ${per.map(([name, us]) => `${name} ${us}`).join(', ')}`)
  }
  return `main ${f('main')}, workers ${f('workers')}, other ${f('other')}`
}

function config(net: Network, dbUrl: string, dataDirectory: string, schema?: string) {
  return {
    port: 0,
    host: '127.0.0.1',
    dataDirectory,
    dbUrl,
    ...(schema ? { dbSchema: schema } : {}),
    plcUrl: net.plcUrl,
    pdsUrls: [net.pdsUrl],
    devMode: true,
    logLevel: (process.env.BENCH_LOG_LEVEL ?? 'silent') as 'silent',
    version: 'bench',
    validateOutput: false,
    labelers: [],
    // (required: left out, the labeler lookup ran every millisecond, a full scan of the record table each time)
    labelerRefreshMs: 30_000,
    backfillOnStart: true,
    // (unset: the AppView's defaults, APPVIEW_BACKFILL_CONCURRENCY / APPVIEW_BACKFILL_MAX_BYTES)
    ...(process.env.BENCH_BACKFILL_CONCURRENCY ? { backfillConcurrency: Number(process.env.BENCH_BACKFILL_CONCURRENCY) } : {}),
    ...(process.env.BENCH_BACKFILL_MAX_BYTES ? { backfillMaxBytes: Number(process.env.BENCH_BACKFILL_MAX_BYTES) } : {}),
    verifyWorkers: Number(process.env.BENCH_VERIFY_WORKERS ?? 2),
    // reads answered by worker threads on read-only connections (0: in the main thread)
    readWorkers: READ_WORKERS,
    // BENCH_READ_CACHE_ROWS=0: the read workers keep no statement results
    ...(process.env.BENCH_READ_CACHE_ROWS ? { readCacheRows: Number(process.env.BENCH_READ_CACHE_ROWS) } : {}),
    repoFetch: { concurrency: 16, hostConcurrency: 16 },
  }
}

async function until(pred: () => Promise<boolean> | boolean, timeoutMs: number, what: string) {
  const deadline = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out: ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

async function backfill(net: Network, manifest: Manifest, dialect: 'sqlite' | 'postgres') {
  const dir = mkdtempSync(join(tmpdir(), 'bench-appview-'))
  let schema: string | undefined
  if (dialect === 'postgres') schema = `bench_appview_${process.pid}`
  // BENCH_DB_SNAPSHOT=file (SQLite): start from that backfilled database when it exists (the backfill then only
  // re-lists the repos), else save one there after the backfill; for repeated reads runs
  const snapshot = dialect === 'sqlite' ? process.env.BENCH_DB_SNAPSHOT : undefined
  const fromSnapshot = !!snapshot && existsSync(snapshot)
  if (fromSnapshot) copyFileSync(snapshot, join(dir, 'appview.sqlite'))
  const batch = process.env.BENCH_BATCH_BACKFILLS
  // BENCH_BATCH_LINGER_MS: the ingester's batchLingerMs (unset: its default)
  const linger = process.env.BENCH_BATCH_LINGER_MS
  const server = await AppViewServer.create(config(net, dialect === 'postgres' ? PG_URL! : join(dir, 'appview.sqlite'), dir, schema), {
    ingest: { ...(batch === undefined ? {} : { batchBackfills: batch === '1' }), ...(linger === undefined ? {} : { batchLingerMs: Number(linger) }) },
  })
  // the worker threads up first (their start-up, module loading from source here, is not per-record work)
  await server.ctx.ingester.verifier?.ready()
  await server.ctx.ingester.repoVerifier?.ready()
  await server.ctx.readPool?.ready()
  const t0 = performance.now()
  const cpu0 = process.cpuUsage()
  const threads0 = threadCpu()
  await server.start()
  await until(async () => (await server.ctx.backfiller.status()).state === 'done', 30 * 60_000, 'backfill')
  const secs = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  const threads1 = threadCpu()
  const records = server.ctx.ingester.stats.resyncedRecords
  if (snapshot && !fromSnapshot) server.ctx.database.sqlite!.prepare('VACUUM INTO ?').run(snapshot)
  const expected = manifest.accounts.reduce((a, b) => a + b.records, 0)
  const cleanup = async () => {
    await server.close()
    if (schema) {
      const admin = await openPostgres(PG_URL!, { poolSize: 1 })
      await admin.db.schema.dropSchema(schema).ifExists().cascade().execute()
      await admin.close()
    }
    rmSync(dir, { recursive: true, force: true })
  }
  return { server, secs, records, expected, cleanup, cpuUs: (cpu.user + cpu.system) / Math.max(1, records), split: cpuSplit(threads0, threads1, records) }
}

type LiveSet = Awaited<ReturnType<Network['live']>>

async function livePosts(server: InstanceType<typeof AppViewServer>, dids: string[]): Promise<number> {
  let n = 0
  for (let i = 0; i < dids.length; i += 500) {
    const row = await server.ctx.db.selectFrom('post').select((eb) => eb.fn.countAll().as('n')).where('creator', 'in', dids.slice(i, i + 500)).executeTakeFirst()
    n += Number(row?.n ?? 0)
  }
  return n
}

/** Publishes every commit at once (as fast as the socket takes them); commits/s and process CPU per commit. */
async function liveBurst(net: Network, server: InstanceType<typeof AppViewServer>, set: LiveSet) {
  const cpu0 = process.cpuUsage()
  const threads0 = threadCpu()
  const writer0 = { ...server.ctx.ingester.writer.stats }
  const stats0 = { ...server.ctx.ingester.stats }
  const t1 = performance.now()
  const { first, last } = await net.burst(set.set)
  await until(async () => ((await server.ctx.ingester.getCursor(net.pdsUrl)) ?? 0) >= last, 20 * 60_000, 'live commits')
  const secs = (performance.now() - t1) / 1000
  const cpu = process.cpuUsage(cpu0)
  const split = cpuSplit(threads0, threadCpu(), set.commits)
  const w0 = writer0
  const w = { writes: server.ctx.ingester.writer.stats.writes - w0.writes, batches: server.ctx.ingester.writer.stats.batches - w0.batches }
  // events dropped above the ingester's buffering bounds: their accounts were resynced from getRepo instead
  const s = server.ctx.ingester.stats
  const dropped = { events: s.overflowed - stats0.overflowed, resyncs: s.fallbackResyncs - stats0.fallbackResyncs }
  return { commits: set.commits, split, secs, cpuUs: (cpu.user + cpu.system) / set.commits, indexed: await livePosts(server, set.dids), first, last, perBatch: w.writes / Math.max(1, w.batches), dropped }
}

/** Commits published at `rate`/s (by the network process); lag from publish to indexed (the ingest cursor passing the event). */
async function livePaced(net: Network, server: InstanceType<typeof AppViewServer>, set: LiveSet, rate: number) {
  // when this process saw the cursor pass each seq
  const seen = new Map<number, number>()
  let at = (await server.ctx.ingester.getCursor(net.pdsUrl)) ?? 0
  let done = false
  const poll = (async () => {
    while (!done) {
      const c = (await server.ctx.ingester.getCursor(net.pdsUrl)) ?? 0
      const now = wallNow()
      for (let s = at + 1; s <= c; s++) seen.set(s, now)
      at = Math.max(at, c)
      await new Promise((r) => setTimeout(r, 2))
    }
  })()
  const { published } = await net.paced(set.set, rate)
  const last = published[published.length - 1]?.[0] ?? 0
  const deadline = Date.now() + 120_000
  while (at < last && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20))
  done = true
  await poll
  const lags = published.flatMap(([seq, t]) => (seen.has(seq) ? [seen.get(seq)! - t] : []))
  lags.sort((a, b) => a - b)
  const q = (p: number) => lags[Math.min(lags.length - 1, Math.floor(p * lags.length))] ?? NaN
  return { commits: set.commits, rate, p50: q(0.5), p99: q(0.99), indexed: await livePosts(server, set.dids) }
}

/** @atproto/sync's Firehose (verifying: signatures and MST proofs, keys from the DID directory) on the burst's frames. */
async function firehoseReference(net: Network, first: number, last: number) {
  // bench/ has no dependencies of its own: the reference comes from the workspace root's (dev) dependencies
  const rootRequire = createRequire(new URL('../package.json', import.meta.url))
  const { Firehose } = (await import(pathToFileURL(rootRequire.resolve('@atproto/sync')).href)) as typeof import('@atproto/sync')
  const { IdResolver } = (await import(pathToFileURL(rootRequire.resolve('@atproto/identity')).href)) as typeof import('@atproto/identity')
  // the default fetch refuses loopback addresses; the bench PLC is on 127.0.0.1
  const idResolver = new IdResolver({ plcUrl: net.plcUrl, fetch: globalThis.fetch })
  let handled = 0
  let commits = 0
  let maxSeq = 0
  let errors = 0
  let lastError = ''
  let progressAt = performance.now()
  let finish: () => void = () => undefined
  const finished = new Promise<void>((r) => (finish = r))
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const firehose = new Firehose({
    idResolver,
    service: net.pdsUrl.replace(/^http/, 'ws'),
    getCursor: () => first - 1,
    handleEvent: async (evt) => {
      handled++
      progressAt = performance.now()
      if (evt.event === 'create') commits++
      if (evt.seq > maxSeq) maxSeq = evt.seq
      if (evt.seq >= last) finish()
    },
    onError: (err) => {
      errors++
      const cause = (err as { cause?: { message?: string } }).cause
      lastError = cause?.message ? `${err.message}: ${cause.message}` : err.message
      if (process.env.BENCH_LOG_LEVEL) console.error('firehose:', err.message)
    },
    excludeIdentity: true,
    excludeAccount: true,
  })
  void firehose.start()
  // done at the last frame, or after 20 s without progress
  const stalled = (async () => {
    while (performance.now() - progressAt < 20_000) await new Promise((r) => setTimeout(r, 500))
  })()
  await Promise.race([finished, stalled])
  if (errors > 0) console.log(`firehose: ${errors} errors, last: ${lastError}`)
  const secs = (performance.now() - t0) / 1000
  const cpu = process.cpuUsage(cpu0)
  await firehose.destroy()
  const n = last - first + 1
  return { events: n, secs, handled, creates: commits, cpuUs: (cpu.user + cpu.system) / n, reached: maxSeq >= last, errors, lastError }
}

/**
 * The reads' load generator: by default in a child process of its own (the issue's setup: the load from
 * another process, so none of its CPU, event loop or GC shares the AppView's process); with
 * BENCH_READS_CLIENT=thread in a worker thread of this process, as the earlier figures were measured (the
 * AppView's event loop still serves only the requests, but the client's V8 heap and GC share the process).
 * Requests are pre-built (service JWTs signed beforehand); keep-alive HTTP, `concurrency` requests in flight.
 */
const READS_CLIENT_MODE = process.env.BENCH_READS_CLIENT ?? 'process'
if (READS_CLIENT_MODE !== 'process' && READS_CLIENT_MODE !== 'thread') throw new Error(`BENCH_READS_CLIENT must be process or thread, got ${READS_CLIENT_MODE}`)
const READS_CLIENT_BODY = `
const http = require('node:http')
const { performance } = require('node:perf_hooks')
const agent = new http.Agent({ keepAlive: true, maxSockets: 64 })
function get(base, r) {
  return new Promise((resolve, reject) => {
    const req = http.get(base + r.path, { agent, headers: r.auth ? { authorization: r.auth } : {} }, (res) => {
      res.on('data', () => {})
      res.on('end', () => resolve(res.statusCode))
    })
    req.on('error', reject)
  })
}
async function runReads({ base, reqs, concurrency }) {
  const times = []
  let next = 0
  let failed = 0
  const t0 = performance.now()
  await Promise.all(Array.from({ length: concurrency }, async () => {
    while (next < reqs.length) {
      const r = reqs[next++]
      const s = performance.now()
      if ((await get(base, r)) !== 200) failed++
      times.push(performance.now() - s)
    }
  }))
  return { times, secs: (performance.now() - t0) / 1000, failed }
}`
const READS_CLIENT_THREAD = `
try { require('node:fs').writeFileSync('/proc/thread-self/comm', 'bench-client') } catch {}
const { parentPort } = require('node:worker_threads')
${READS_CLIENT_BODY}
parentPort.on('message', async (m) => parentPort.postMessage(await runReads(m)))`
const READS_CLIENT_PROCESS = `
${READS_CLIENT_BODY}
process.on('message', async (m) => process.send(await runReads(m)))
process.on('disconnect', () => process.exit(0))`

/** The load generator (see READS_CLIENT_MODE): run(message) → its answer; close() ends it. */
async function readsClient(): Promise<{ run: (m: unknown) => Promise<any>; close: () => Promise<void> }> {
  let failure: unknown = null
  const waiters: { resolve: (v: any) => void; reject: (e: unknown) => void }[] = []
  const fail = (err: unknown) => {
    failure = err
    for (const w of waiters.splice(0)) w.reject(err)
  }
  const settle = (v: unknown) => waiters.shift()?.resolve(v)
  const ask = (send: () => void) =>
    new Promise<any>((resolve, reject) => {
      if (failure) return reject(failure)
      waiters.push({ resolve, reject })
      send()
    })
  if (READS_CLIENT_MODE === 'thread') {
    const { Worker } = await import('node:worker_threads')
    const w = new Worker(READS_CLIENT_THREAD, { eval: true })
    w.on('error', fail)
    w.on('message', settle)
    return { run: (m) => ask(() => w.postMessage(m)), close: async () => void (await w.terminate()) }
  }
  const proc = spawn(process.execPath, ['-e', READS_CLIENT_PROCESS], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
  children.add(proc)
  proc.on('error', fail)
  proc.on('exit', (code) => fail(new Error(`the reads client exited with code ${code}`)))
  proc.on('message', settle)
  return {
    run: (m) => ask(() => proc.send(m as never)),
    close: async () => {
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((r) => proc.once('exit', r))
        proc.disconnect()
        await exited
      }
    },
  }
}

/** CPU ms so far (clock ticks of 10 ms, from /proc) of the AppView's main thread (its event loop), of its read workers, and of all its threads (the bench's client thread left out). */
function readsCpuMs(): { main: number; readers: number; all: number; byName: Map<string, number> } {
  const out = { main: 0, readers: 0, all: 0, byName: new Map<string, number>() }
  for (const t of threadTimes()) {
    const ms = t.us / 1000
    const name = t.main ? 'main' : t.name
    out.byName.set(name, (out.byName.get(name) ?? 0) + ms)
    if (t.name === 'bench-client') continue
    if (t.main) out.main += ms
    else if (t.name.startsWith('appview-read')) out.readers += ms
    out.all += ms
  }
  return out
}

async function reads(server: InstanceType<typeof AppViewServer>, manifest: Manifest, net: Network) {
  const { cidForCbor } = await import('../packages/core/src/data/index.js')
  const viewer = manifest.accounts[0]!
  // (BENCH_READS_VIEWERS: viewers 0..n-1 are the first accounts)
  const viewers = await Promise.all(
    manifest.accounts.slice(0, Math.max(1, READS_VIEWERS)).map(async (a) => ({ did: a.did, key: await importKeypair(a.keyHex, 'k256') })),
  )
  const db = server.ctx.db
  const root = await db.selectFrom('post').select(['uri', 'cid']).where('creator', '=', viewer.did).orderBy('sortAt', 'asc').limit(1).executeTakeFirst()
  const replies = root ? Number((await db.selectFrom('post').select((eb) => eb.fn.countAll().as('n')).where('replyRoot', '=', root.uri).executeTakeFirst())?.n ?? 0) : 0
  const follows = Number((await db.selectFrom('follow').select((eb) => eb.fn.countAll().as('n')).where('creator', '=', viewer.did).executeTakeFirst())?.n ?? 0)
  // history indexed by the backfill notifies nobody: 200 likes of the viewer's post, indexed as live records are, give it notifications
  if (root) {
    for (let i = 0; i < 200; i++) {
      const liker = manifest.accounts[1 + ((200 + i) % (manifest.accounts.length - 1))]!.did
      const record = { $type: 'app.bsky.feed.like', subject: { uri: root.uri, cid: root.cid }, createdAt: new Date(Date.parse('2026-02-01T00:00:00Z') + i * 1000).toISOString() }
      await server.ctx.indexer.indexOne(`at://${liker}/app.bsky.feed.like/3lbenchlike${String(i).padStart(3, '0')}`, cidForCbor(record).toString(), record)
    }
  }
  // the other viewers follow 1,000 accounts each too (a different set each), indexed as live records are
  for (let v = 1; v < viewers.length; v++) {
    const n = manifest.accounts.length
    const subjects = new Set<string>()
    for (let k = 0; subjects.size < Math.min(1000, n - 1); k++) {
      const did = manifest.accounts[(v * 131 + k * 7) % n]!.did
      if (did !== viewers[v]!.did) subjects.add(did)
    }
    let i = 0
    for (const subject of subjects) {
      const record = { $type: 'app.bsky.graph.follow', subject, createdAt: new Date(Date.parse('2026-01-15T00:00:00Z') + i * 1000).toISOString() }
      await server.ctx.indexer.indexOne(`at://${viewers[v]!.did}/app.bsky.graph.follow/3lbenchf${String(i++).padStart(4, '0')}`, cidForCbor(record).toString(), record)
    }
  }
  const notifications = Number((await db.selectFrom('notification').select((eb) => eb.fn.countAll().as('n')).where('did', '=', viewer.did).executeTakeFirst())?.n ?? 0)
  const auth = async (nsid: string, v: (typeof viewers)[number]) =>
    `Bearer ${await createServiceJwt({ iss: v.did, aud: `${server.did}#bsky_appview`, lxm: nsid, keypair: v.key })}`
  const calls: Record<string, { path: string; nsid?: string }> = {
    getTimeline: { path: '/xrpc/app.bsky.feed.getTimeline?limit=50', nsid: 'app.bsky.feed.getTimeline' },
    getPostThread: { path: `/xrpc/app.bsky.feed.getPostThread?uri=${encodeURIComponent(root!.uri)}&depth=6`, ...(READS_VIEWERS > 0 ? { nsid: 'app.bsky.feed.getPostThread' } : {}) },
    getProfile: { path: `/xrpc/app.bsky.actor.getProfile?actor=${manifest.accounts[7]!.did}` },
    getProfiles: { path: `/xrpc/app.bsky.actor.getProfiles?${manifest.accounts.slice(1, 26).map((a) => `actors=${a.did}`).join('&')}` },
    getAuthorFeed: { path: `/xrpc/app.bsky.feed.getAuthorFeed?actor=${manifest.accounts[7]!.did}&limit=50`, nsid: 'app.bsky.feed.getAuthorFeed' },
    listNotifications: { path: '/xrpc/app.bsky.notification.listNotifications?limit=50', nsid: 'app.bsky.notification.listNotifications' },
  }
  const client = await readsClient()
  const run = (reqs: { path: string; auth?: string }[]): Promise<{ times: number[]; secs: number; failed: number }> =>
    client.run({ base: server.url, reqs, concurrency: 16 })
  const out: { name: string; p50: number; p99: number; rps: number; cpuUs: number; readersUs: number; allUs: number; bytes: number; hits: string }[] = []
  // the read workers' cache counters, summed: statement results kept (off with BENCH_READ_CACHE_ROWS=0) and parsed post versions
  const cacheCounters = async () => {
    const all = (await server.ctx.readPool?.cacheStats()) ?? []
    const sum = (f: (s: (typeof all)[number]) => number) => all.reduce((a, s) => a + f(s), 0)
    return { hits: sum((s) => s.hits), misses: sum((s) => s.misses), postHits: sum((s) => s.postVersions?.hits ?? 0), postMisses: sum((s) => s.postVersions?.misses ?? 0) }
  }
  const rate = (hits: number, misses: number) => (hits + misses === 0 ? '—' : `${Math.round((100 * hits) / (hits + misses))} % of ${hits + misses}`)
  try {
    // `--calls getTimeline,getPostThread`: only those methods (for profiles)
    const only = process.argv.flatMap((a, i) => (process.argv[i - 1] === '--calls' ? a.split(',') : []))
    for (const [name, call] of Object.entries(calls)) {
      if (only.length > 0 && !only.includes(name)) continue
      const build = async (n: number) =>
        Promise.all(Array.from({ length: n }, async (_, i) => (call.nsid ? { path: call.path, auth: await auth(call.nsid, viewers[i % viewers.length]!) } : { path: call.path })))
      const probe = (await build(1))[0]!
      const first = await fetch(server.url + probe.path, { headers: probe.auth ? { authorization: probe.auth } : {} })
      if (!first.ok) throw new Error(`${name}: ${first.status} ${await first.text()}`)
      const bytes = (await first.arrayBuffer()).byteLength
      // warm-up: with 32 requests, V8 was still compiling the read path during the measured run (its helper
      // threads' CPU per request fell from ~1,500 to ~850 µs between runs of 300 and 1,500 requests)
      await run(await build(READS_WARMUP))
      const reqs = await build(READS)
      // (BENCH_READS_LIVE: commits for about as long as the run lasts at 50 requests/s, built before it)
      const live = READS_LIVE > 0 ? await net.live(50, Math.ceil((READS_LIVE * READS) / 50)) : null
      const counters0 = await cacheCounters()
      const cpu0 = readsCpuMs()
      const publishing = live ? net.paced(live.set, READS_LIVE) : null
      const r = await profiled(`reads-${name}`, () => run(reqs))
      const cpu1 = readsCpuMs()
      if (publishing) await publishing
      const counters1 = await cacheCounters()
      const hits = `${rate(counters1.hits - counters0.hits, counters1.misses - counters0.misses)}; posts ${rate(counters1.postHits - counters0.postHits, counters1.postMisses - counters0.postMisses)}`
      if (r.failed > 0) throw new Error(`${name}: ${r.failed} requests failed`)
      const times = r.times.sort((a, b) => a - b)
      const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!
      const us = (k: 'main' | 'readers' | 'all') => ((cpu1[k] - cpu0[k]) * 1000) / times.length
      if (process.env.BENCH_THREADS) {
        const per = [...cpu1.byName].map(([n, ms]) => `${n} ${Math.round(((ms - (cpu0.byName.get(n) ?? 0)) * 1000) / times.length)}`)
        console.log(`${name}: CPU µs/request by thread name: ${per.join(', ')}`)
      }
      out.push({ name, p50: q(0.5), p99: q(0.99), rps: times.length / r.secs, cpuUs: us('main'), readersUs: us('readers'), allUs: us('all'), bytes, hits })
    }
  } finally {
    await client.close()
  }
  return { out, replies, follows, notifications }
}

async function explain(server: InstanceType<typeof AppViewServer>, manifest: Manifest): Promise<string> {
  if (server.ctx.database.dialect !== 'sqlite') return ''
  const sqlite = server.ctx.database.sqlite!
  const { hydrationQueries } = await import('../services/appview/src/hydration/hydrator.js')
  const { listSql } = await import('../services/appview/src/hydration/sql.js')
  const did = manifest.accounts[0]!.did
  const list = JSON.stringify([did])
  const q = listSql(server.ctx.db)
  const h = hydrationQueries(q)
  const { newestItemsSql, NEWEST_SQL, pageSql, pageArgs } = await import('../services/appview/src/api/timeline.js')
  const { REPLIES_SQL } = await import('../services/appview/src/api/app/bsky/feed/getPostThread.js')
  // the statements as the code writes them (the timeline's first page; step 2's bound is a placeholder)
  const queries: [string, string, unknown[]][] = [
    ["timeline, step 1, first page (each followed account's newest item time from author_latest, one primary-key seek each; the newest 2 × limit accounts)", q.prepare(NEWEST_SQL).sql, [did, did, 100]],
    [
      "timeline, step 1, later pages (each followed account's newest item before the cursor, one index seek each)",
      q.prepare(newestItemsSql(' AND fi."sortAt" <= ? AND (fi."sortAt" < ? OR fi.uri < ?)')).sql,
      ['2026-01-01T00:00:00.000Z', '2026-01-01T00:00:00.000Z', 'at://x', did, did, 100],
    ],
    [
      "timeline, step 2 (the page: items at or after the bound of the accounts listed in step 1; the subquery finds the limit-th newest time among them from the index alone, the rows are read from there)",
      q.prepare(pageSql(true, '')).sql,
      pageArgs([JSON.stringify([did, did, did])], '2026-01-01T00:00:00.000Z', [], 50),
    ],
    ['thread replies (one level, with their heads)', q.prepare(REPLIES_SQL).sql, [JSON.stringify(['at://x/app.bsky.feed.post/y']), 5000]],
    ['hydration: counts of the posts whose heads the thread read', h.aggs.sql, [list]],
    ['hydration: posts, current versions and counts (every request)', h.postHeads.sql, [list]],
    ['hydration: posts with their record (versions not cached)', h.posts.sql, [list]],
    ['hydration: actors with their profile', h.actors.sql, [list]],
    ['hydration: detailed actors: counts, labeler service', h.actorCounts.sql, ['app.bsky.labeler.service', list]],
    ["hydration: which relationship kinds the viewer has (8 EXISTS seeks)", h.viewerKinds.sql, Array.from({ length: 8 }, () => did)],
    [
      "hydration: the viewer's relationships (8 kinds, one statement; a kind the viewer has none of is skipped)",
      h.actorViewers.sql,
      [list, did, 1, list, did, 1, list, did, 1, list, did, 1, did, list, 1, did, list, 1, list, did, 1, did, list, 1],
    ],
    ['hydration: block edges among authors', h.blocksFrom.sql, [list, list, list, list]],
    ['hydration: gates', h.gates.sql, [list, list]],
    ["hydration: the viewer's likes and reposts", h.viewerInteractions.sql, [list, did, list, did]],
    ['notifications', `select * from "notification" where "notification"."did" = ? order by "notification"."sortAt" desc, "notification"."recordUri" desc limit ?`, [did, 50]],
  ]
  let md = ''
  for (const [name, text, params] of queries) {
    try {
      const rows = sqlite.prepare(`EXPLAIN QUERY PLAN ${text}`).all(...params) as { detail: string }[]
      md += `- ${name}: \`${rows.map((r) => r.detail).join('; ')}\`\n`
    } catch (err) {
      md += `- ${name}: (${(err as Error).message})\n`
    }
  }
  return md
}

// run
// =

const net = await startNetwork()
const manifest = net.manifest
const totalRecords = manifest.accounts.reduce((a, b) => a + b.records, 0)
const rows: string[] = []
let readsMd = ''
let explainMd = ''
const backfillRow = (db: string, b: Awaited<ReturnType<typeof backfill>>) =>
  `| backfill, ${db} | ${REPOS} repos, ${b.records} records indexed of ${b.expected} | ${b.secs.toFixed(1)} s | **${Math.round(b.records / b.secs)} records/s**, ${(REPOS / b.secs).toFixed(1)} repos/s | ${Math.round(b.cpuUs)} µs/record (${b.split}) |`
const burstRow = (db: string, l: Awaited<ReturnType<typeof liveBurst>>) =>
  `| live at full speed, ${db} | ${l.commits} single-op commits over a WebSocket (new accounts), ${l.perBatch.toFixed(0)} commits per transaction on average | ${l.secs.toFixed(1)} s | **${Math.round(l.commits / l.secs)} commits/s** (${l.indexed} posts indexed; ${l.dropped.events} events dropped, ${l.dropped.resyncs} accounts resynced) | ${Math.round(l.cpuUs)} µs/commit (${l.split}) |`
try {
  const burstSet = want('live') || want('firehose') ? await net.live(100, LIVE) : null
  const pacedSet = want('paced') ? await net.live(50, Math.min(2000, Math.ceil(LIVE / 2))) : null
  if (want('backfill') || want('live') || want('paced') || want('reads')) {
    const sqlite = await profiled('backfill-sqlite', () => backfill(net, manifest, 'sqlite'))
    rows.push(backfillRow('SQLite', sqlite))
    console.log(rows[rows.length - 1])
    let l: Awaited<ReturnType<typeof liveBurst>> | null = null
    if (burstSet && want('live')) {
      l = await profiled('live-sqlite', () => liveBurst(net, sqlite.server, burstSet))
      rows.push(burstRow('SQLite', l))
      console.log(rows[rows.length - 1])
    }
    if (pacedSet) {
      const p = await livePaced(net, sqlite.server, pacedSet, PACED)
      rows.push(
        `| live paced, SQLite | ${p.commits} single-op commits at ${p.rate}/s (${p.indexed} posts indexed) | — | lag publish → indexed: p50 **${p.p50.toFixed(0)} ms**, p99 **${p.p99.toFixed(0)} ms** | |`,
      )
      console.log(rows[rows.length - 1])
    }
    if (want('reads')) {
      const r = await reads(sqlite.server, manifest, net)
      readsMd =
        `Reads on SQLite at concurrency 16, ${READS} requests each (timeline viewer follows ${r.follows} accounts; thread root has ${r.replies} replies; ` +
        (READS_VIEWERS > 0 ? `requests spread over ${READS_VIEWERS} viewers each following 1,000 accounts, getPostThread authenticated too; ` : '') +
        `statement-result cache ${process.env.BENCH_READ_CACHE_ROWS === '0' ? 'off (BENCH_READ_CACHE_ROWS=0)' : 'on'}; ` +
        `the viewer has ${r.notifications} notifications), ${READS_LIVE > 0 ? `while live commits (posts of new accounts) were indexed at ${READS_LIVE}/s (their CPU counts in the AppView's threads), ` : ''}load generated from ${READS_CLIENT_MODE === 'process' ? 'another process' : 'a worker thread of the AppView\'s process (BENCH_READS_CLIENT=thread)'}; ${READ_WORKERS} read workers; CPU per request: main thread = the AppView's event loop ` +
        `(HTTP, auth; with no read workers also SQLite, hydration, views, JSON), read workers (SQLite, hydration, views, JSON), all = every AppView thread (GC helpers included; the load generator left out):\n\n` +
        '| method | p50 ms | p99 ms | req/s | CPU µs/request: main thread | read workers | all | response bytes | cache hits: statement results; parsed post versions |\n|---|---|---|---|---|---|---|---|---|\n' +
        r.out.map((o) => `| ${o.name} | ${o.p50.toFixed(1)} | ${o.p99.toFixed(1)} | ${Math.round(o.rps)} | ${Math.round(o.cpuUs)} | ${Math.round(o.readersUs)} | ${Math.round(o.allUs)} | ${o.bytes} | ${o.hits} |`).join('\n')
      console.log(readsMd)
      explainMd = await explain(sqlite.server, manifest)
      console.log(explainMd)
    }
    await sqlite.cleanup()
    if (l && want('firehose')) {
      const fh = await firehoseReference(net, l.first, l.last)
      rows.push(
        `| reference: @atproto/sync Firehose (verifying), same ${fh.events} frames | ${fh.creates} creates handed to the handler${fh.reached ? '' : ' (did not reach the last frame)'} | ${fh.secs.toFixed(1)} s | **${Math.round(fh.events / fh.secs)} commits/s** (parse + verify only, no indexing) | ${Math.round(fh.cpuUs)} µs/commit |`,
      )
      console.log(rows[rows.length - 1])
    }
  }
  if (PG_URL && want('pg')) {
    const pg = await profiled('backfill-pg', () => backfill(net, manifest, 'postgres'))
    rows.push(backfillRow('PostgreSQL', pg))
    console.log(rows[rows.length - 1])
    const pgSet = await net.live(100, Math.ceil(LIVE / 2))
    const lp = await profiled('live-pg', () => liveBurst(net, pg.server, pgSet))
    rows.push(burstRow('PostgreSQL', lp))
    console.log(rows[rows.length - 1])
    await pg.cleanup()
  }
} finally {
  await net.close()
}

if (ONLY.length === 0) writeResultsSection(
  'appview',
  `## appview (network backfill, live ingest, reads)

${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}; shared with other jobs.
Dataset: ${REPOS} repos × ${RECORDS} records = ${totalRecords} records (posts 30 %, likes 40 %, reposts 15 %, follows 15 %; the viewer also follows up to 1,000), real signed
CARs served by a fake PDS over HTTP (listRepos + getRepo); \`node --import tsx bench/appview.ts --repos ${REPOS} --records ${RECORDS} --live ${LIVE} --reads ${READS} --paced-rate ${PACED}\`.
The fake PLC and PDS (and the live publisher) run in a child process; the AppView runs in the bench process, and CPU per record / commit is that process's (user + system, worker threads included); the reads' load generator runs in a process of its own (BENCH_READS_CLIENT=thread: in a worker thread of the bench process, as before).

| phase | work | time | rate | process CPU |
|---|---|---|---|---|
${rows.join('\n')}

${readsMd}

EXPLAIN QUERY PLAN (SQLite) of the hot queries, as the code writes them (the timeline's bound in step 2 is a placeholder):

${explainMd}`,
)
