/**
 * The Stratos PDS against the reference PDS (@atproto/pds from the npm registry, a dev dependency of bench/
 * only), side by side in one run. Four processes: an in-memory did:plc directory (@did-plc/server), the
 * reference PDS, our PDS (services/pds from source), each in its own process, and the load from this one
 * (keep-alive, plain JSON requests: no client library in the way; by default the lean HTTP/1.1 client of
 * lib/lean-http.ts, 128 sockets per server, one request in flight per socket; `--client undici` for an undici
 * Pool with the same settings, the client of earlier runs, which spends ~2.5x the CPU per request: at the
 * getRecord rates it took a third of the machine's two cores). The same client loads both servers.
 * Firehose consumers run in a fifth process.
 *
 *   pnpm bench pds   (= node --import tsx bench/pds.ts [--runs 3] [--seconds 3] [--many 300] [--cache 100] [--prof] [--perf] [--client lean|undici])
 *
 * Per run and server (servers alternate within a run; the figure is the median of the runs):
 * - createRecord/s on one account at concurrency 1 and 8 (p50/p99 latency at 8);
 * - writes/s across 50 accounts (50 concurrent writers, one per account) and across `--many` accounts
 *   written round-robin by 50 concurrent writers (more accounts than our open-handle cache holds: the run sets
 *   PDS_ACTOR_STORE_CACHE_SIZE to `--cache`, 100, so 300 accounts exceed its 100 open + 100 parked handles);
 * - getRecord and listRecords (limit 50) requests/s at concurrency 16 on the account written above;
 * - firehose: 50 subscribeRepos consumers attached while the 50-account load runs; lag = when the k-th
 *   #commit frame reached the consumers (median / last of the 50) minus when the k-th write was acknowledged;
 * - CPU µs per request of each server process (utime+stime from /proc/<pid>/stat over the phase), and of its
 *   main thread alone for the writes (/proc/<pid>/task/<pid>/stat: the event loop, the bound of a Node server;
 *   the rest is the thread pool's fsyncs and worker threads, on the other cores);
 * - fsyncs per write: `strace -f -c -e trace=fsync,fdatasync` attached to the server process (all threads)
 *   during a separate 200-write phase at concurrency 8 on one account (strace slows the process, so the
 *   throughput phases run without it). Skipped when strace is missing.
 * `--pds-defaults` starts our PDS as a production one runs (rate limits on, LOG_LEVEL=info, its request log lines going to
 * the bench through a pipe), behind a trusted loopback proxy (PDS_TRUSTED_PROXIES=loopback): each request carries an
 * X-Forwarded-For of one of 4,096 client addresses, so the per-IP limit (3,000 per 5 minutes) is charged on every
 * request without refusing the load (long write phases may still reach the per-account write budget).
 * `--perf` records an on-CPU profile (perf) of our server's main thread in the c8 and w50 phases and prints it (see perfPhase).
 * `--only stratos` loads one server only (for profiling; RESULTS.md is left alone). `--prof` writes V8 CPU profiles of both PDS processes to bench/.cache/pds-prof/<server>/ (the largest file of
 * a directory is the main thread's).
 * Prints a table and rewrites the "pds" section of bench/RESULTS.md.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createRequire } from 'node:module'
import { createServer } from 'node:net'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { performance } from 'node:perf_hooks'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { LeanPool } from './lib/lean-http.js'
import { writeResultsSection } from './results.js'

const benchRequire = createRequire(import.meta.url)
const { Pool } = benchRequire('undici') as typeof import('undici')

const ROOT = fileURLToPath(new URL('../', import.meta.url))
const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const RUNS = arg('runs', 3)
const SECONDS = arg('seconds', 3)
// accounts cost ~0.1-0.3 s each to create (scrypt, PLC): 300 keeps the default run near 5 minutes
const MANY = arg('many', 300)
// our handle cache for the run: below MANY, so round-robin writes go past what it holds
const OUR_CACHE = arg('cache', 100)
const FEW = 50
const PROF = process.argv.includes('--prof')
const PHASES = process.argv.includes('--phases') ? new Set(process.argv[process.argv.indexOf('--phases') + 1]!.split(',')) : null
const ONLY = process.argv.includes('--only') ? process.argv[process.argv.indexOf('--only') + 1] : null
const PDS_DEFAULTS = process.argv.includes('--pds-defaults')
const CLIENT = process.argv.includes('--client') ? process.argv[process.argv.indexOf('--client') + 1]! : 'lean'
if (CLIENT !== 'lean' && CLIENT !== 'undici') throw new Error(`--client must be lean or undici (got ${CLIENT})`)
const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK']).stdout?.toString().trim()) || 100
const HAVE_STRACE = spawnSync('strace', ['-V']).status === 0
const PERF = process.argv.includes('--perf')
if (PERF && spawnSync('perf', ['--version']).status !== 0) throw new Error('--perf needs perf (linux-tools) on PATH')

const ROTATION_KEY = 'e4b3a0e7f8a3b4c3e2d1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9'
const ADMIN_PASSWORD = 'bench-admin'

async function freePort(): Promise<number> {
  const srv = createServer()
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve))
  const port = (srv.address() as { port: number }).port
  await new Promise((resolve) => srv.close(resolve))
  return port
}

/** Spawns a server process and waits for a `{"ready":true}` line (ours logs JSON lines: polls describeServer). */
async function startProcess(name: string, args: string[], env: Record<string, string>, healthUrl?: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, args, { cwd: ROOT, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString()
    if (stderr.length > 20_000) stderr = stderr.slice(-10_000)
  })
  const exited = new Promise<never>((_, reject) =>
    child.once('exit', (code) => reject(new Error(`${name} exited (${code}) before it was ready:\n${stderr.slice(-3000)}`))),
  )
  if (healthUrl) {
    child.stdout!.resume()
    const poll = (async () => {
      for (;;) {
        try {
          const res = await fetch(healthUrl)
          if (res.ok) return
        } catch {
          /* not yet */
        }
        await new Promise((r) => setTimeout(r, 100))
      }
    })()
    await Promise.race([poll, exited])
  } else {
    const ready = new Promise<void>((resolve) => {
      createInterface({ input: child.stdout! }).on('line', (line) => {
        if (line.includes('"ready":true')) resolve()
      })
    })
    await Promise.race([ready, exited])
  }
  child.removeAllListeners('exit')
  return child
}

/** utime+stime of a process (all its threads), or of its main thread (the event loop) with `mainThread` */
function cpuTicks(pid: number, mainThread = false): number {
  const stat = readFileSync(mainThread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return Number(fields[11]) + Number(fields[12]) // utime, stime (fields 14, 15 of stat)
}

interface Account {
  did: string
  jwt: string
  rkeys: string[]
}

class Target {
  pool: InstanceType<typeof Pool> | null = null
  lean: LeanPool | null = null
  accounts: Account[] = []
  /** --pds-defaults: the next client address sent in X-Forwarded-For (ours only) */
  private client = 0
  constructor(
    readonly name: string,
    readonly url: string,
    readonly proc: ChildProcess,
  ) {
    if (CLIENT === 'lean') this.lean = new LeanPool(url, { connections: 128 })
    else this.pool = new Pool(url, { connections: 128, pipelining: 1, keepAliveTimeout: 60_000 })
  }

  async call(method: 'GET' | 'POST', nsid: string, opts: { query?: string; body?: unknown; jwt?: string } = {}) {
    const headers: Record<string, string> = {}
    if (opts.body !== undefined) headers['content-type'] = 'application/json'
    if (opts.jwt) headers.authorization = `Bearer ${opts.jwt}`
    if (PDS_DEFAULTS && this.name === 'stratos') {
      const n = this.client++ & 4095
      headers['x-forwarded-for'] = `10.0.${n >> 8}.${n & 255}`
    }
    const request = {
      method,
      path: `/xrpc/${nsid}${opts.query ? `?${opts.query}` : ''}`,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    }
    let text: string
    let statusCode: number
    if (this.lean) {
      ;({ statusCode, body: text } = await this.lean.request(request))
    } else {
      const res = await this.pool!.request(request)
      statusCode = res.statusCode
      text = await res.body.text()
    }
    if (statusCode !== 200) throw new Error(`${this.name} ${nsid}: ${statusCode} ${text.slice(0, 300)}`)
    return text
  }

  async createAccount(i: number): Promise<Account> {
    // a few tries: under load the PLC directory (shared by both servers) may not answer in time (502)
    for (let attempt = 1; ; attempt++) {
      const handle = `b${i}-${Math.random().toString(36).slice(2, 8)}.test`
      try {
        const text = await this.call('POST', 'com.atproto.server.createAccount', {
          body: { handle, email: `${handle}@example.com`, password: 'bench-password' },
        })
        const out = JSON.parse(text) as { did: string; accessJwt: string }
        return { did: out.did, jwt: out.accessJwt, rkeys: [] }
      } catch (err) {
        if (attempt >= 3 || !/: 5\d\d /.test((err as Error).message)) throw err
        console.log(`  ${(err as Error).message.slice(0, 160)}; trying again`)
      }
    }
  }

  async createRecord(acct: Account): Promise<void> {
    const text = await this.call('POST', 'com.atproto.repo.createRecord', {
      jwt: acct.jwt,
      body: {
        repo: acct.did,
        collection: 'app.bsky.feed.post',
        record: {
          $type: 'app.bsky.feed.post',
          text: 'bench post: the quick brown fox jumps over the lazy dog',
          langs: ['en'],
          createdAt: new Date().toISOString(),
        },
      },
    })
    const uri = (JSON.parse(text) as { uri: string }).uri
    acct.rkeys.push(uri.slice(uri.lastIndexOf('/') + 1))
  }
}

interface PhaseResult {
  ops: number
  seconds: number
  rate: number
  cpuUsPerOp: number
  /** the server's main thread (its event loop) only */
  mainUsPerOp: number
  /** this (load) process's CPU per op */
  clientUsPerOp: number
  p50: number
  p99: number
  /** ack times (ms since the epoch) of every op, for the firehose lag */
  acks: number[]
}

/** `concurrency` workers call `op(worker, i)` until `seconds` have passed. */
async function phase(t: Target, seconds: number, concurrency: number, op: (worker: number, i: number) => Promise<void>): Promise<PhaseResult> {
  const lat: number[] = []
  const acks: number[] = []
  let i = 0
  const cpu0 = cpuTicks(t.proc.pid!)
  const main0 = cpuTicks(t.proc.pid!, true)
  const client0 = process.cpuUsage()
  const start = performance.now()
  const deadline = start + seconds * 1000
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (performance.now() < deadline) {
        const t0 = performance.now()
        await op(w, i++)
        const t1 = performance.now()
        lat.push(t1 - t0)
        acks.push(performance.timeOrigin + t1)
      }
    }),
  )
  const elapsed = (performance.now() - start) / 1000
  const cpuUs = ((cpuTicks(t.proc.pid!) - cpu0) / CLK_TCK) * 1e6
  const mainUs = ((cpuTicks(t.proc.pid!, true) - main0) / CLK_TCK) * 1e6
  const client = process.cpuUsage(client0)
  lat.sort((a, b) => a - b)
  acks.sort((a, b) => a - b)
  return {
    ops: lat.length,
    seconds: elapsed,
    rate: lat.length / elapsed,
    cpuUsPerOp: cpuUs / lat.length,
    mainUsPerOp: mainUs / lat.length,
    clientUsPerOp: (client.user + client.system) / lat.length,
    p50: lat[Math.floor(lat.length * 0.5)] ?? NaN,
    p99: lat[Math.floor(lat.length * 0.99)] ?? NaN,
    acks,
  }
}

async function createAccounts(t: Target, n: number): Promise<void> {
  let next = t.accounts.length
  const target = n
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (next < target) {
        const i = next++
        t.accounts[i] = await t.createAccount(i)
      }
    }),
  )
}

async function firehosePhase(t: Target, seconds: number) {
  const wsUrl = `${t.url.replace('http', 'ws')}/xrpc/com.atproto.sync.subscribeRepos`
  const child = spawn(process.execPath, [join(ROOT, 'bench/lib/pds-firehose-consumers.mjs'), JSON.stringify({ url: wsUrl, consumers: FEW })], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: child.stdout! })
  const nextLine = () => new Promise<string>((resolve) => lines.once('line', resolve))
  await nextLine() // ready
  const few = t.accounts.slice(0, FEW)
  const writes = await phase(t, seconds, FEW, (w) => t.createRecord(few[w]!))
  // a frame later than 3 s after the last write counts as not delivered
  await new Promise((r) => setTimeout(r, 3000))
  child.stdin!.write('stop\n')
  const out = JSON.parse(await nextLine()) as { counts: number[]; median: (number | null)[]; max: (number | null)[] }
  const lagsMedian: number[] = []
  const lagsMax: number[] = []
  for (let k = 0; k < writes.acks.length; k++) {
    const m = out.median[k]
    const x = out.max[k]
    lagsMedian.push(m == null ? Infinity : m - writes.acks[k]!)
    lagsMax.push(x == null ? Infinity : x - writes.acks[k]!)
  }
  lagsMedian.sort((a, b) => a - b)
  lagsMax.sort((a, b) => a - b)
  const delivered = Math.min(...out.counts)
  return {
    rate: writes.rate,
    delivered: delivered / writes.ops,
    lagP50: lagsMedian[Math.floor(lagsMedian.length / 2)] ?? NaN,
    lagP99: lagsMax[Math.floor(lagsMax.length * 0.99)] ?? NaN,
  }
}

/**
 * --perf: an on-CPU profile of our server's main thread during `run` (perf record, sampling only while the
 * thread runs: V8's --cpu-prof samples wall time, so a thread preempted inside a call, as happens on a loaded
 * machine right after it wakes a thread-pool or worker thread, charges the wait to that call). Prints the
 * shares by binary (node = V8 and the runtime, JIT = optimized JS, kernel = syscalls, libc = malloc and
 * friends, better_sqlite3 = SQLite, secp256k1 = signing) and the top symbols; keeps the data in bench/.cache/pds-perf/.
 */
async function perfPhase<T>(t: Target, name: string, run: () => Promise<T>): Promise<T> {
  if (!PERF || t.name !== 'stratos') return run()
  const dir = join(ROOT, 'bench/.cache/pds-perf')
  mkdirSync(dir, { recursive: true })
  const data = join(dir, `${name}.data`)
  const perf = spawn('perf', ['record', '-q', '-F', '999', '-t', String(t.proc.pid!), '-o', data], { stdio: 'ignore' })
  await new Promise((r) => setTimeout(r, 300))
  try {
    return await run()
  } finally {
    const done = new Promise((r) => perf.once('exit', r))
    perf.kill('SIGINT')
    await done
    const report = (sort: string, n: number) =>
      spawnSync('perf', ['report', '-i', data, '--no-children', '--sort', sort, '--stdio'], { encoding: 'utf8', maxBuffer: 64 << 20 })
        .stdout.split('\n')
        .filter((l) => l.trim() && !l.startsWith('#'))
        .slice(0, n)
        .join('\n')
    console.log(`perf, ${name}, our main thread on CPU, by binary:\n${report('dso', 8)}\ntop symbols:\n${report('dso,sym', 25)}`)
  }
}

async function fsyncsPerWrite(t: Target, writes: number): Promise<number> {
  if (!HAVE_STRACE) return NaN
  const pid = t.proc.pid!
  const out = join(tmpdir(), `pds-bench-strace-${t.name}-${process.pid}.txt`)
  const tids = (await import('node:fs')).readdirSync(`/proc/${pid}/task`)
  const strace = spawn('strace', ['-f', '-c', '-e', 'trace=fsync,fdatasync', '-o', out, ...tids.flatMap((tid) => ['-p', tid])], {
    stdio: 'ignore',
  })
  await new Promise((r) => setTimeout(r, 1000))
  const acct = t.accounts[0]!
  let n = 0
  await Promise.all(
    Array.from({ length: 8 }, async () => {
      while (n < writes) {
        n++
        await t.createRecord(acct)
      }
    }),
  )
  await new Promise((r) => setTimeout(r, 200))
  const done = new Promise((r) => strace.once('exit', r))
  strace.kill('SIGINT')
  await done
  const text = readFileSync(out, 'utf8')
  rmSync(out, { force: true })
  let calls = 0
  for (const line of text.split('\n')) {
    const m = /^\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?(fsync|fdatasync)\s*$/.exec(line)
    if (m) calls += Number(m[1])
  }
  return calls / n
}

const median = (xs: number[]) => {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  return s.length ? s[Math.floor(s.length / 2)]! : NaN
}

// ---------------------------------------------------------------------------------------------------------

const work = mkdtempSync(join(tmpdir(), 'pds-bench-'))
const profDir = join(ROOT, 'bench/.cache/pds-prof')
if (PROF) mkdirSync(profDir, { recursive: true })
const procs: ChildProcess[] = []
const stopAll = () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGTERM')
}
process.on('exit', stopAll)

try {
  const plcPort = await freePort()
  procs.push(await startProcess('plc', [join(ROOT, 'bench/lib/pds-plc-server.mjs'), String(plcPort)], {}))
  const plcUrl = `http://127.0.0.1:${plcPort}`

  const common = (port: number, dir: string) => ({
    PDS_HOSTNAME: 'localhost',
    PDS_PORT: String(port),
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: dir,
    PDS_BLOBSTORE_DISK_LOCATION: join(dir, 'blobs'),
    PDS_JWT_SECRET: 'bench-jwt-secret',
    PDS_ADMIN_PASSWORD: ADMIN_PASSWORD,
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: ROTATION_KEY,
    PDS_DID_PLC_URL: plcUrl,
    PDS_INVITE_REQUIRED: 'false',
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_RATE_LIMITS_ENABLED: 'false',
    PDS_CRAWLERS: '',
    LOG_ENABLED: 'false',
    LOG_LEVEL: 'warn',
  })
  // one directory per server: a process with loader hooks (tsx) writes one profile per thread; the largest is the server's
  const prof = (name: string) => (PROF ? ['--cpu-prof', `--cpu-prof-dir=${join(profDir, name)}`] : [])

  const refPort = await freePort()
  const refDir = join(work, 'ref')
  mkdirSync(refDir, { recursive: true })
  const refProc = await startProcess(
    'reference PDS',
    [...prof('reference'), join(ROOT, 'bench/lib/pds-ref-server.mjs')],
    { ...common(refPort, refDir), NODE_ENV: 'production', PDS_BSKY_APP_VIEW_URL: 'http://127.0.0.1:1', PDS_BSKY_APP_VIEW_DID: 'did:web:localhost' },
  )
  procs.push(refProc)

  const ourPort = await freePort()
  const ourDir = join(work, 'ours')
  mkdirSync(ourDir, { recursive: true })
  const ourProc = await startProcess(
    'Stratos PDS',
    [...prof('stratos'), ...(PERF ? ['--perf-basic-prof'] : []), '--import', 'tsx', '--import', './bench/lib/register.ts', join(ROOT, 'services/pds/src/bin.ts')],
    {
      ...common(ourPort, ourDir),
      NODE_ENV: 'production',
      UV_THREADPOOL_SIZE: '16',
      PDS_MAX_CONNECTIONS_PER_IP: '10000',
      PDS_MAX_SUBSCRIPTIONS_PER_IP: '1000',
      PDS_ACTOR_STORE_CACHE_SIZE: String(OUR_CACHE),
      ...(PDS_DEFAULTS ? { PDS_RATE_LIMITS_ENABLED: 'true', LOG_LEVEL: 'info', PDS_TRUSTED_PROXIES: 'loopback' } : {}),
    },
    `http://127.0.0.1:${ourPort}/xrpc/com.atproto.server.describeServer`,
  )
  procs.push(ourProc)

  const targets = [new Target('stratos', `http://127.0.0.1:${ourPort}`, ourProc), new Target('reference', `http://127.0.0.1:${refPort}`, refProc)]

  // --only stratos|reference: load one server only (profiling); RESULTS.md is then left alone
  const active = ONLY ? targets.filter((t) => t.name === ONLY) : targets
  const setup: Record<string, number> = {}
  for (const t of active) {
    const t0 = performance.now()
    await createAccounts(t, MANY)
    setup[t.name] = (performance.now() - t0) / 1000
    console.log(`${t.name}: ${MANY} accounts created in ${setup[t.name]!.toFixed(1)} s`)
  }

  type Row = Record<string, number>
  const results: Record<string, Row[]> = { stratos: [], reference: [] }
  for (let run = 0; run < RUNS; run++) {
    for (const t of run % 2 === 0 ? active : [...active].reverse()) {
      const one = t.accounts[0]!
      const few = t.accounts.slice(0, FEW)
      const many = t.accounts.slice(0, MANY)
      // --phases c1,c8,w50,wMany,get,list,fh,fsync: run only these (profiling); the others report nothing
      const skipped: PhaseResult = { ops: 0, seconds: 0, rate: NaN, cpuUsPerOp: NaN, mainUsPerOp: NaN, clientUsPerOp: NaN, p50: NaN, p99: NaN, acks: [] }
      const maybe = <T>(name: string, fn: () => Promise<T>, dflt: T) => (!PHASES || PHASES.has(name) ? fn() : Promise.resolve(dflt))
      const c1 = await maybe('c1', () => phase(t, SECONDS, 1, () => t.createRecord(one)), skipped)
      const c8 = await maybe('c8', () => perfPhase(t, `c8-run${run + 1}`, () => phase(t, SECONDS, 8, () => t.createRecord(one))), skipped)
      const w50 = await maybe('w50', () => perfPhase(t, `w50-run${run + 1}`, () => phase(t, SECONDS, FEW, (w) => t.createRecord(few[w]!))), skipped)
      let rr = 0
      const wMany = await maybe('wMany', () => phase(t, SECONDS, FEW, () => t.createRecord(many[rr++ % many.length]!)), skipped)
      while (one.rkeys.length < 200) await t.createRecord(one)
      const rkeys = one.rkeys
      const get = await maybe('get', () => phase(t, SECONDS, 16, async (_, i) => {
        await t.call('GET', 'com.atproto.repo.getRecord', {
          query: `repo=${encodeURIComponent(one.did)}&collection=app.bsky.feed.post&rkey=${rkeys[(i * 7919) % rkeys.length]}`,
        })
      }), skipped)
      const list = await maybe('list', () => phase(t, SECONDS, 16, async () => {
        await t.call('GET', 'com.atproto.repo.listRecords', {
          query: `repo=${encodeURIComponent(one.did)}&collection=app.bsky.feed.post&limit=50`,
        })
      }), skipped)
      const fh = await maybe('fh', () => firehosePhase(t, SECONDS), { rate: NaN, delivered: NaN, lagP50: NaN, lagP99: NaN })
      const row: Row = {
        c1: c1.rate,
        c8: c8.rate,
        c8p50: c8.p50,
        c8p99: c8.p99,
        c8cpu: c8.cpuUsPerOp,
        c8main: c8.mainUsPerOp,
        w50: w50.rate,
        w50p50: w50.p50,
        w50p99: w50.p99,
        w50cpu: w50.cpuUsPerOp,
        w50main: w50.mainUsPerOp,
        wMany: wMany.rate,
        wManyp99: wMany.p99,
        wManycpu: wMany.cpuUsPerOp,
        wManymain: wMany.mainUsPerOp,
        get: get.rate,
        getcpu: get.cpuUsPerOp,
        getclient: get.clientUsPerOp,
        list: list.rate,
        listcpu: list.cpuUsPerOp,
        fhRate: fh.rate,
        fhDelivered: fh.delivered,
        fhLagP50: fh.lagP50,
        fhLagP99: fh.lagP99,
      }
      results[t.name]!.push(row)
      console.log(`run ${run + 1} ${t.name}: ${Object.entries(row).map(([k, v]) => `${k}=${v.toFixed(k.endsWith('cpu') || k.endsWith('main') || k.startsWith('c8p') ? 0 : 1)}`).join(' ')}`)
    }
  }
  const fsyncs: Record<string, number> = {}
  for (const t of active) fsyncs[t.name] = PHASES && !PHASES.has('fsync') ? NaN : await fsyncsPerWrite(t, 200)
  console.log(`fsyncs per write: ${JSON.stringify(fsyncs)}`)

  const med = (name: string, key: string) => median(results[name]!.map((r) => r[key]!))
  const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '—')
  const ratio = (key: string, lowerIsBetter = false) => {
    const a = med('stratos', key)
    const b = med('reference', key)
    const r = lowerIsBetter ? b / a : a / b
    return Number.isFinite(r) ? `**${r.toFixed(1)}x**` : '—'
  }
  const line = (label: string, key: string, unit: string, opts: { lower?: boolean; digits?: number; accept?: boolean; noRatio?: boolean } = {}) =>
    `| ${label}${opts.accept ? ' ★' : ''} | ${fmt(med('stratos', key), opts.digits)} ${unit} | ${fmt(med('reference', key), opts.digits)} ${unit} | ${opts.noRatio ? '' : ratio(key, opts.lower)} |`
  const table = [
    '| measure | Stratos PDS | reference PDS | ours vs reference |',
    '|---|---:|---:|---:|',
    line('createRecord, 1 account, concurrency 1', 'c1', '/s'),
    line('createRecord, 1 account, concurrency 8', 'c8', '/s', { accept: true }),
    line('— latency p50 (c=8)', 'c8p50', 'ms', { lower: true, digits: 1 }),
    line('— latency p99 (c=8)', 'c8p99', 'ms', { lower: true, digits: 1 }),
    line('— server CPU per write (c=8)', 'c8cpu', 'µs', { lower: true }),
    line('— of which its main thread (event loop)', 'c8main', 'µs', { lower: true }),
    line(`writes, ${FEW} accounts, 50 writers`, 'w50', '/s', { accept: true }),
    line('— latency p50', 'w50p50', 'ms', { lower: true, digits: 1 }),
    line('— latency p99', 'w50p99', 'ms', { lower: true, digits: 1 }),
    line('— server CPU per write', 'w50cpu', 'µs', { lower: true }),
    line('— of which its main thread (event loop)', 'w50main', 'µs', { lower: true }),
    line(`writes, ${MANY} accounts round-robin, 50 writers`, 'wMany', '/s'),
    line('— latency p99', 'wManyp99', 'ms', { lower: true, digits: 1 }),
    line('— server CPU per write', 'wManycpu', 'µs', { lower: true }),
    line('— of which its main thread (event loop)', 'wManymain', 'µs', { lower: true }),
    line('getRecord, concurrency 16', 'get', '/s', { accept: true }),
    line('— server CPU per request', 'getcpu', 'µs', { lower: true }),
    line('— load generator CPU per request (same client for both)', 'getclient', 'µs', { noRatio: true }),
    line('listRecords (limit 50), concurrency 16', 'list', '/s'),
    line('— server CPU per request', 'listcpu', 'µs', { lower: true }),
    line(`writes, ${FEW} accounts, with ${FEW} firehose consumers`, 'fhRate', '/s'),
    line('— firehose lag p50 (median consumer; < 0: frame before the HTTP ack)', 'fhLagP50', 'ms', { noRatio: true, digits: 1 }),
    line('— firehose lag p99 (slowest consumer)', 'fhLagP99', 'ms', { noRatio: true, digits: 1 }),
    line('— share of events every consumer got within 3 s', 'fhDelivered', '', { digits: 2, noRatio: true }),
    `| fsyncs per write (strace, c=8, 200 writes) | ${fmt(fsyncs.stratos!, 2)} | ${fmt(fsyncs.reference!, 2)} | |`,
  ].join('\n')
  const cpuModel = cpus()[0]?.model ?? 'unknown CPU'
  const md = [
    '## PDS (`pnpm bench pds`)',
    '',
    `${new Date().toISOString().slice(0, 10)}, ${cpus().length} × ${cpuModel}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}. ` +
      `Stratos PDS (services/pds from source) vs reference @atproto/pds ${benchRequire('@atproto/pds/package.json').version} ` +
      `(npm; the last line that runs on Node 20), each in its own process with its own data directory, one in-memory ` +
      `@did-plc/server for both, load from a third process over keep-alive HTTP (${CLIENT === 'lean' ? 'the lean client of bench/lib/lean-http.ts' : 'undici Pool'}, 128 sockets, plain JSON; the same for both servers). ` +
      `Median of ${RUNS} runs of ${SECONDS} s per phase; servers alternate. Posts of ~60 bytes of text. ` +
      `Both with rate limits off, NODE_ENV=production (ours also UV_THREADPOOL_SIZE=16, as its Docker image sets). ★ = acceptance figure (10x). CPU = utime+stime of the server ` +
      `process over the phase / requests. Accounts created first: ${MANY} per server ` +
      `(${fmt(setup.stratos!, 1)} s ours, ${fmt(setup.reference!, 1)} s reference); our PDS_ACTOR_STORE_CACHE_SIZE=${OUR_CACHE} ` +
      `(default 500) so that the ${MANY}-account round-robin goes past the handles it keeps.`,
    '',
    table,
    '',
    'Per run (ours | reference):',
    '',
    '```',
    ...['stratos', 'reference'].flatMap((n) =>
      results[n]!.map((r, i) => `${n} run ${i + 1}: c1 ${fmt(r.c1!)} c8 ${fmt(r.c8!)} w50 ${fmt(r.w50!)} w${MANY} ${fmt(r.wMany!)} get ${fmt(r.get!)} list ${fmt(r.list!)}`),
    ),
    '```',
  ].join('\n')
  console.log('\n' + table)
  // RESULTS.md describes the bench settings (rate limits off): a --pds-defaults run leaves it alone
  if (!ONLY && !PDS_DEFAULTS) writeResultsSection('pds', md)
} finally {
  for (const p of procs) {
    if (p.exitCode !== null) continue
    const exited = new Promise((r) => p.once('exit', r))
    p.kill('SIGTERM')
    await Promise.race([exited, new Promise((r) => setTimeout(r, 10_000))])
    if (p.exitCode === null) p.kill('SIGKILL')
  }
  rmSync(work, { recursive: true, force: true })
}
process.exit(0)
