/**
 * The relay end to end, each part in its own process (`pnpm bench relay`):
 *   upstream   bench/lib/relay-upstream.ts: real signed sync-1.1 commits of ≥50 accounts (@atproto/repo,
 *              generated once, cached in bench/.cache/), replayed over a WebSocket as fast as the relay reads
 *              (or at a fixed rate), plus the PLC documents of the accounts;
 *   relay      bench/lib/relay-process.ts: services/relay from source, a fresh data directory per run;
 *   consumers  bench/lib/relay-consumers.ts: 1 or 100 subscribeRepos consumers, read by the `raw` instrument (a
 *              hand-written WebSocket frame reader; every consumer checks every seq in place) or, with
 *              `--instrument ws`, by the `ws` library as before 2026-12-07 (a heavier instrument: with 100
 *              consumers it took 310-400 µs CPU per event from the same 2 cores). Rows say which.
 * Per run: verified commits/s from the first upstream frame to the last frame at the last consumer; the
 * relay's CPU per event per thread (main, verification workers, the rest: GC and libuv threads), from
 * /proc/<pid>/task/*\/stat; latency p50/p99 from upstream send to consumer-0 receive (wall clocks of one
 * machine); the relay's peak RSS (VmHWM); events missing at a consumer, and the relay's drop counter.
 * Comparison: @atproto/sync's verifying Firehose (bench/lib/relay-firehose-ref.ts) on the same upstream frames.
 *
 *   node --import tsx bench/relay.ts [--accounts 50] [--commits 10000] [--runs 3] [--ref-commits 2000]
 *        [--latency-rates 1000,2000,5000] [--only workers|workers1|workers100|inline|latency|ref ...] [--cpu-prof DIR]
 *        [--relay-node-args "--flag ..."]   (node flags for the relay process, e.g. V8 heap flags or --perf-basic-prof)
 *        [--instrument raw|ws|raw,ws]   (consumer instrument; several: each configuration runs with each, alternating)
 *
 * `workers` is both workers1 (1 consumer) and workers100 (100 consumers). `latency`: one run per offered rate
 * (frames/s, paced by the upstream), 1 consumer: the latency when the relay keeps up, next to the rates it cannot.
 *
 * Rewrites the "relay" section of bench/RESULTS.md (not with --only / --cpu-prof).
 */
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { cpus, tmpdir, totalmem } from 'node:os'
import { join } from 'node:path'
import { writeResultsSection } from './results.js'
import { Child } from './lib/child.js'
import { threadTimes } from './lib/thread-cpu.js'
import { loadFixture } from './lib/relay-upstream.js'

const argv = process.argv.slice(2)
const arg = (name: string, dflt: number) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? Number(argv[i + 1]) : dflt
}
const argStr = (name: string) => {
  const i = argv.indexOf(`--${name}`)
  return i >= 0 ? argv[i + 1] : undefined
}
const ACCOUNTS = arg('accounts', 50)
const COMMITS = arg('commits', 10_000)
const RUNS = arg('runs', 3)
const REF_COMMITS = arg('ref-commits', 2_000)
const LATENCY_RATES = (argStr('latency-rates') ?? '1000,2000,5000').split(',').map(Number)
if (LATENCY_RATES.some((r) => !Number.isFinite(r) || r <= 0)) throw new Error('--latency-rates: frames/s, comma-separated')
const CPU_PROF = argStr('cpu-prof')
/** extra node flags for the relay process (e.g. V8 heap flags), space-separated */
const RELAY_NODE_ARGS = (argStr('relay-node-args') ?? '').split(' ').filter(Boolean)
const only = argv.flatMap((a, i) => (argv[i - 1] === '--only' ? [a] : []))
const want = (k: string) => only.length === 0 || only.includes(k)
const TIMEOUT_MS = arg('timeout', 120) * 1000
type Instrument = 'raw' | 'ws'
const INSTRUMENTS = (argStr('instrument') ?? 'raw').split(',') as Instrument[]
if (INSTRUMENTS.some((i) => i !== 'raw' && i !== 'ws')) throw new Error('--instrument: raw, ws or raw,ws')

const fmt = (n: number, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '–'

interface ThreadCpu {
  main: number
  workers: number
  other: number
  /** of which in the kernel (stime) */
  mainSys?: number
  workersSys?: number
  otherSys?: number
  /** the other threads' CPU µs by thread name (V8's platform workers: GC and JIT; libuv's pool: fdatasyncs...) */
  otherByName?: Record<string, number>
  /** each verification worker's CPU µs (`verify-0`, `verify-1`...): an account stays on a worker while its tasks are in flight and otherwise goes to the least loaded one */
  workersByName?: Record<string, number>
}

const TICK_US = 1e6 / 100 // USER_HZ (100 on Linux)

/** CPU µs so far of a process's threads: the main thread (tid = pid), `verify-*` workers, the rest. */
function threadCpu(pid: number): ThreadCpu {
  const out: Required<ThreadCpu> = { main: 0, workers: 0, other: 0, mainSys: 0, workersSys: 0, otherSys: 0, otherByName: {}, workersByName: {} }
  for (const { name: comm, main, us, sysUs: sys } of threadTimes(pid)) {
    if (main) {
      out.main += us
      out.mainSys += sys
    } else if (comm.startsWith('verify-')) {
      out.workers += us
      out.workersSys += sys
      out.workersByName[comm] = (out.workersByName[comm] ?? 0) + us
    } else {
      out.other += us
      out.otherSys += sys
      const name = comm.replace(/[0-9]+$/, '').trim()
      out.otherByName[name] = (out.otherByName[name] ?? 0) + us
    }
  }
  return out
}

/** CPU µs so far of a whole process (all its threads), and of it in the kernel. */
function processCpu(pid: number | undefined): { us: number; sysUs: number } {
  if (pid === undefined) return { us: NaN, sysUs: NaN }
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = fields.slice(fields.lastIndexOf(')') + 2).split(' ')
    return { us: (Number(f[11]) + Number(f[12])) * TICK_US, sysUs: Number(f[12]) * TICK_US } // utime + stime (all threads)
  } catch {
    return { us: NaN, sysUs: NaN }
  }
}

function peakRssMiB(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const m = /VmHWM:\s+(\d+) kB/.exec(status)
  return m ? Number(m[1]) / 1024 : NaN
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!
}

interface RunConfig {
  name: string
  workers: number | 'default'
  consumers: number
  /** frames/s offered (0 = as fast as the relay reads) */
  rate: number
  /** how the consumers read (see bench/lib/relay-consumers.ts) */
  instrument: Instrument
}

interface RunResult {
  cfg: RunConfig
  workers: number
  frames: number
  commits: number
  seconds: number
  commitsPerSec: number
  cpu: ThreadCpu
  cpuPerEvent: ThreadCpu
  /** the other threads' CPU µs per event by thread name */
  otherByName: Record<string, number>
  /** each verification worker's CPU µs per event */
  workersByName: Record<string, number>
  /** CPU µs per event of the upstream and consumer processes (they share the machine's cores with the relay) */
  upstreamCpuPerEvent: number
  consumersCpuPerEvent: number
  /** of which in the kernel (the loopback TCP reads) */
  consumersSysPerEvent: number
  p50: number
  p99: number
  peakRssMiB: number
  missing: number
  droppedByRelay: number
  bad: string[]
}

async function runRelay(cfg: RunConfig, index: { frames: { t: string; did: string; rev?: string }[] }): Promise<RunResult> {
  const data = mkdtempSync(join(tmpdir(), 'stratos-bench-relay-'))
  const sendTimesFile = join(data, 'send-times.bin')
  const upstream = new Child('lib/relay-upstream.ts', [JSON.stringify({ accounts: ACCOUNTS, commits: COMMITS, rate: cfg.rate, sendTimes: sendTimesFile })], { timeoutMs: TIMEOUT_MS })
  const up = await upstream.next<{ url: string; frames: number; commits: number }>(600_000)
  const env: Record<string, string> = {
    RELAY_PORT: '0',
    RELAY_DATA_DIRECTORY: join(data, 'relay'),
    RELAY_PLC_URL: up.url,
    RELAY_DEV_MODE: 'true',
    RELAY_HOST_LIMIT_PER_SECOND: 'none',
    RELAY_HOST_LIMIT_PER_HOUR: 'none',
    RELAY_HOST_LIMIT_PER_DAY: 'none',
    RELAY_HOST_ACCOUNT_LIMIT: 'none',
    RELAY_CONSUMER_MAX_QUEUED_EVENTS: String(up.frames * 2),
    RELAY_CONSUMER_MAX_QUEUED_BYTES: String(1 << 30),
    RELAY_COLLECTION_BACKFILL: 'false',
    RELAY_JETSTREAM_ENABLED: 'false',
    RELAY_MAX_CONNECTIONS_PER_IP: '1000',
    RELAY_SUBSCRIBE_MAX_PER_IP: '1000',
    LOG_LEVEL: 'warn',
  }
  if (cfg.workers !== 'default') env.RELAY_VERIFY_WORKERS = String(cfg.workers)
  const nodeArgs = [...RELAY_NODE_ARGS, ...(CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${CPU_PROF}`] : [])]
  const relay = new Child('lib/relay-process.ts', [], { env, nodeArgs, timeoutMs: TIMEOUT_MS })
  const r = await relay.next<{ url: string; pid: number; workers: number }>()
  const recvFile = join(data, 'recv.json')
  const consumers = new Child('lib/relay-consumers.ts', [JSON.stringify({ url: r.url, n: cfg.consumers, expect: up.frames, idleMs: 20_000, recvFile, instrument: cfg.instrument })], { timeoutMs: TIMEOUT_MS })
  await consumers.next<{ ready: true }>()

  const cpu0 = threadCpu(r.pid)
  const upCpu0 = processCpu(upstream.proc.pid)
  const conCpu0 = processCpu(consumers.proc.pid)
  relay.send(`crawl ${up.url}`)
  const res = await consumers.next<{ min: number; max: number; first: number; last: number; bad: string[] }>()
  const cpu1 = threadCpu(r.pid)
  const upCpu1 = processCpu(upstream.proc.pid)
  const conCpu1 = processCpu(consumers.proc.pid)
  const stream = await upstream.next<{ first: number; last: number; sent: number }>()
  const rss = peakRssMiB(r.pid)
  const metrics = await (await fetch(`${r.url}/metrics`)).text()
  const dropped = [...metrics.matchAll(/^relay_events_dropped_total\{[^}]*\} (\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0)

  await consumers.stop()
  await relay.stop('SIGTERM')
  await upstream.stop()
  const sendTimes = new Float64Array(new Uint8Array(readFileSync(sendTimesFile)).buffer)
  const recv = JSON.parse(readFileSync(recvFile, 'utf8')) as Record<string, number>
  rmSync(data, { recursive: true, force: true })

  const lat: number[] = []
  index.frames.forEach((f, i) => {
    if (f.t !== '#commit' || i >= sendTimes.length) return
    const t = recv[`${f.did} ${f.rev}`]
    if (t !== undefined) lat.push(t - sendTimes[i]!)
  })
  lat.sort((a, b) => a - b)
  const d = (k: keyof ThreadCpu) => (cpu1[k] ?? 0) - (cpu0[k] ?? 0)
  const cpu: ThreadCpu = { main: d('main'), workers: d('workers'), other: d('other'), mainSys: d('mainSys'), workersSys: d('workersSys'), otherSys: d('otherSys') }
  const seconds = (res.last - stream.first) / 1000
  return {
    cfg,
    workers: r.workers,
    frames: up.frames,
    commits: up.commits,
    seconds,
    commitsPerSec: up.commits / seconds,
    cpu,
    cpuPerEvent: {
      main: cpu.main / up.frames,
      workers: cpu.workers / up.frames,
      other: cpu.other / up.frames,
      mainSys: cpu.mainSys! / up.frames,
      workersSys: cpu.workersSys! / up.frames,
      otherSys: cpu.otherSys! / up.frames,
    },
    otherByName: Object.fromEntries(
      Object.entries(cpu1.otherByName ?? {}).map(([k, v]) => [k, Math.round((v - (cpu0.otherByName?.[k] ?? 0)) / up.frames)]),
    ),
    workersByName: Object.fromEntries(
      Object.entries(cpu1.workersByName ?? {}).map(([k, v]) => [k, Math.round((v - (cpu0.workersByName?.[k] ?? 0)) / up.frames)]),
    ),
    upstreamCpuPerEvent: (upCpu1.us - upCpu0.us) / up.frames,
    consumersCpuPerEvent: (conCpu1.us - conCpu0.us) / up.frames,
    consumersSysPerEvent: (conCpu1.sysUs - conCpu0.sysUs) / up.frames,
    p50: percentile(lat, 50),
    p99: percentile(lat, 99),
    peakRssMiB: rss,
    missing: up.frames - res.min,
    droppedByRelay: dropped,
    bad: res.bad,
  }
}

async function runReference(): Promise<{ commits: number; seconds: number; perSec: number; cpuUsPerCommit: number; errors: string[] }> {
  const limit = 3 * ACCOUNTS + REF_COMMITS
  const upstream = new Child('lib/relay-upstream.ts', [JSON.stringify({ accounts: ACCOUNTS, commits: COMMITS, rate: 0, limit })], { timeoutMs: TIMEOUT_MS })
  const up = await upstream.next<{ url: string; commits: number }>(600_000)
  const ref = new Child('lib/relay-firehose-ref.ts', [JSON.stringify({ upstream: up.url, expect: up.commits, idleMs: 20_000 })], { timeoutMs: TIMEOUT_MS })
  const stream = await upstream.next<{ first: number }>(TIMEOUT_MS * 3)
  const res = await ref.next<{ commits: number; first: number; last: number; cpuUs: number; errors: string[] }>(TIMEOUT_MS * 3)
  await ref.stop()
  await upstream.stop()
  const seconds = (res.last - stream.first) / 1000
  return { commits: res.commits, seconds, perSec: res.commits / seconds, cpuUsPerCommit: res.cpuUs / res.commits, errors: res.errors }
}

function line(r: RunResult): string {
  return (
    `${r.cfg.name.padEnd(34)} ${fmt(r.commitsPerSec).padStart(7)} commits/s  ` +
    `CPU µs/event main ${fmt(r.cpuPerEvent.main)} workers ${fmt(r.cpuPerEvent.workers)}` +
    (Object.keys(r.workersByName).length > 1 ? ` (${Object.entries(r.workersByName).sort().map(([, v]) => fmt(v)).join(' + ')})` : '') +
    ` other ${fmt(r.cpuPerEvent.other)} ` +
    `(kernel ${fmt(r.cpuPerEvent.mainSys ?? NaN)}/${fmt(r.cpuPerEvent.workersSys ?? NaN)}/${fmt(r.cpuPerEvent.otherSys ?? NaN)}; ` +
    `upstream process ${fmt(r.upstreamCpuPerEvent)}, consumers process ${fmt(r.consumersCpuPerEvent)} (kernel ${fmt(r.consumersSysPerEvent)}); ` +
    `other: ${Object.entries(r.otherByName).filter(([, v]) => v > 0).map(([k, v]) => `${k} ${v}`).join(', ')})  ` +
    `p50 ${fmt(r.p50)} ms p99 ${fmt(r.p99)} ms  RSS ${fmt(r.peakRssMiB)} MiB  missing ${r.missing} dropped ${r.droppedByRelay}` +
    (r.bad.length ? `  problems: ${r.bad.slice(0, 3).join('; ')}` : '')
  )
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]!
}

async function main() {
  const t0 = performance.now()
  // generate (or load) the fixture once, in the upstream's own process
  if (!loadFixture(ACCOUNTS, COMMITS)) {
    console.log(`relay: generating ${ACCOUNTS} accounts × ${fmt(COMMITS)} commits into bench/.cache/ (once)...`)
    const gen = new Child('lib/relay-upstream.ts', [JSON.stringify({ accounts: ACCOUNTS, commits: COMMITS })], { timeoutMs: TIMEOUT_MS })
    await gen.next(900_000)
    await gen.stop()
  }
  const fixture = loadFixture(ACCOUNTS, COMMITS)!
  const index = fixture.index
  const configs: RunConfig[] = []
  const label = (instrument: Instrument) => (instrument === 'ws' ? ' (ws-library consumers)' : '')
  // (with several instruments, each configuration runs with each in turn: old and new instrument in the same minute)
  const each = (f: (instrument: Instrument, l: string) => RunConfig) => INSTRUMENTS.forEach((i) => configs.push(f(i, label(i))))
  if (want('workers') || want('workers1')) each((instrument, l) => ({ name: `workers (default), 1 consumer${l}`, workers: 'default', consumers: 1, rate: 0, instrument }))
  if (want('workers') || want('workers100')) each((instrument, l) => ({ name: `workers (default), 100 consumers${l}`, workers: 'default', consumers: 100, rate: 0, instrument }))
  if (want('inline')) each((instrument, l) => ({ name: `RELAY_VERIFY_WORKERS=0, 1 consumer${l}`, workers: 0, consumers: 1, rate: 0, instrument }))
  console.log(
    `relay: ${ACCOUNTS} accounts, ${fmt(fixture.frames.length)} upstream frames (${fmt(index.frames.filter((f) => f.t === '#commit').length)} commits); ` +
      `${RUNS} runs per configuration, each with fresh processes\n`,
  )
  const results: RunResult[] = []
  for (let run = 0; run < RUNS; run++) {
    for (const cfg of configs) {
      const r = await runRelay(cfg, index)
      results.push(r)
      console.log(line(r))
    }
  }
  const latency: RunResult[] = []
  if (want('latency')) {
    for (const rate of LATENCY_RATES) {
      const r = await runRelay({ name: `workers, 1 consumer, ${fmt(rate)} frames/s offered`, workers: 'default', consumers: 1, rate, instrument: INSTRUMENTS[0]! }, index)
      latency.push(r)
      console.log(line(r))
    }
  }
  let ref: Awaited<ReturnType<typeof runReference>> | undefined
  if (want('ref')) {
    ref = await runReference()
    console.log(`@atproto/sync Firehose (verifying): ${fmt(ref.perSec)} commits/s over ${fmt(ref.commits)} commits, ${fmt(ref.cpuUsPerCommit)} µs CPU/commit`)
  }
  console.log(`\nrelay bench: ${((performance.now() - t0) / 1000).toFixed(0)} s`)
  if (only.length === 0 && !CPU_PROF) report(configs, results, latency, ref)
}

function report(configs: RunConfig[], results: RunResult[], latency: RunResult[], ref: Awaited<ReturnType<typeof runReference>> | undefined) {
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  const rows = configs.map((cfg) => {
    const rs = results.filter((r) => r.cfg === cfg)
    const avg = (f: (r: RunResult) => number) => rs.reduce((a, r) => a + f(r), 0) / rs.length
    return (
      `| ${cfg.name} | ${rs[0]!.workers} | **${fmt(median(rs.map((r) => r.commitsPerSec)))}** (${rs.map((r) => fmt(r.commitsPerSec)).join(', ')}) | ` +
      `${fmt(avg((r) => r.cpuPerEvent.main))} | ${fmt(avg((r) => r.cpuPerEvent.workers))} | ${fmt(avg((r) => r.cpuPerEvent.other))} | ` +
      `${fmt(median(rs.map((r) => r.p50)))} / ${fmt(median(rs.map((r) => r.p99)))} | ${fmt(Math.max(...rs.map((r) => r.peakRssMiB)))} | ` +
      `${Math.max(...rs.map((r) => r.missing))} / ${Math.max(...rs.map((r) => r.droppedByRelay))} |`
    )
  })
  for (const r of latency) {
    rows.push(
      `| ${r.cfg.name} | ${r.workers} | ${fmt(r.commitsPerSec)} | ${fmt(r.cpuPerEvent.main)} | ${fmt(r.cpuPerEvent.workers)} | ${fmt(r.cpuPerEvent.other)} | ` +
        `**${fmt(r.p50)} / ${fmt(r.p99)}** | ${fmt(r.peakRssMiB)} | ${r.missing} / ${r.droppedByRelay} |`,
    )
  }
  if (ref) {
    rows.push(
      `| @atproto/sync \`Firehose\` (verifying), same upstream frames (first ${fmt(ref.commits)} commits), one process | – | ${fmt(ref.perSec)} | ` +
        `${fmt(ref.cpuUsPerCommit)} (process, per commit) | – | – | – | – | ${ref.errors.length ? ref.errors.length + ' errors' : '–'} |`,
    )
  }
  writeResultsSection(
    'relay',
    [
      '## relay: end to end, upstream → relay → consumers, each in its own process',
      '',
      `\`pnpm bench relay\` — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpu} (${cpus().length} cores, ` +
        `${Math.round(totalmem() / 2 ** 30)} GiB; **shared with other jobs** unless stated otherwise). Upstream: ${ACCOUNTS} accounts, ` +
        `${fmt(COMMITS)} single-create commits interleaved across them (real signed sync-1.1 commits with \`prevData\`, built with ` +
        '@atproto/repo, cached in bench/.cache/) after each account\'s #identity, #account and first commit, replayed over a WebSocket ' +
        'as fast as the relay reads (send buffer ≤ 1 MiB), or paced at a fixed rate (the "offered" rows). Relay: services/relay from source, ' +
        'fresh data directory, WAL with `synchronous = NORMAL` and an fdatasync of the WAL before each batch is published, Jetstream and collection backfill off. ' +
        'Consumers: subscribers in a third process, read with a hand-written WebSocket frame reader (bench/lib/raw-ws.ts; every consumer ' +
        'checks every seq in place, consumer 0 indexes each #commit for the latency). Until 2026-12-07 they were read with the `ws` library, ' +
        'consumer 0 decoding every frame: that instrument took 310-400 µs CPU per event with 100 consumers from the same 2 cores, so the ' +
        '100-consumer figures before that date measure the relay and a heavier consumer process together (rows marked "ws-library consumers" use it).',
      '',
      '- commits/s: commits ÷ (first upstream frame sent → last frame received by the last consumer); median of the runs, runs in brackets.',
      '- CPU µs per event (all upstream frames), per thread of the relay process from /proc/<pid>/task: main thread, verification workers ' +
        '(sum over the pool), other threads (GC helpers, libuv).',
      '- latency: upstream send → consumer-0 receive, per commit (wall clocks of one machine); in the rows offered as fast as the relay ' +
        'reads, it includes the wait in the upstream socket, so only the fixed-rate rows measure latency (and only where the relay keeps up ' +
        'with the offered rate: its commits/s equal to the rate).',
      '- missing: frames some consumer did not get (must be 0); dropped: the relay\'s `relay_events_dropped_total` (must be 0).',
      '',
      '| configuration | workers | verified commits/s | CPU µs/event main | CPU µs/event workers | CPU µs/event other | latency p50 / p99 ms | peak RSS MiB | missing / dropped |',
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...rows,
    ].join('\n'),
  )
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
