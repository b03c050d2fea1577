/**
 * What serving Jetstream's JSON streams costs the relay (`pnpm bench jetstream`), each part in its own
 * process:
 *   relay        bench/lib/jetstream-relay.ts: services/relay from source, Jetstream on, and a feeder that
 *                hands its Jetstream hub the relay benchmark's real signed one-post commits (bench/.cache)
 *                at a fixed rate, through the call the outbox makes for every committed event (so: the
 *                live serving code, convert once, filter, encode and compress once, write to the sockets;
 *                none of the relay's ingest);
 *   subscribers  bench/lib/jetstream-subscribers.mjs: 1 or 100 WebSocket subscribers counting messages;
 *   upstream     bench/lib/relay-upstream.ts (ingest runs only): the same commits as a PDS's stream.
 *
 * Part 1, serving at a fixed rate (--rate, default 5,000 events/s offered, --events per scenario): per
 * scenario the relay process's CPU (user + system of all its threads, /proc/<pid>/stat) per event; the
 * serving cost is that minus the same feed with no subscriber (the feeder and the idle relay); "in the
 * hub" is the CPU inside the publish calls (process.cpuUsage around each). Events/s delivered: events ÷
 * (feed start → last message at the subscribers); bytes per message on the wire.
 *
 * Part 2, ingest for comparison (--ingest commits, 0 to skip): the relay ingesting the same signed commits
 * from the upstream process as fast as it can (real verification, default worker pool), without and with
 * 100 filtered subscribers: process CPU per event. The issue's goal compares Part 1's serving cost for 100
 * filtered subscribers at 5,000 events/s with the relay's ingest CPU per event: this run's, and the one in
 * the relay section of bench/RESULTS.md (`pnpm bench relay`, all threads) when there is one.
 *
 * Part 3, replay: 100 subscribers replaying the same logged range from its first seq, with the hub's cache
 * of converted events and with it disabled.
 *
 *   node --import tsx bench/jetstream.ts [--rate 5000] [--events 15000] [--ingest 3000] [--runs 1]
 *        [--dictionary legacy_subscribe.zdict] [--only serve|replay|ingest ...]
 *
 * --dictionary: the /subscribe zstd dictionary for the dictionary scenarios (e.g. Jetstream's published
 * legacy_subscribe.zdict, which is not in the repository); without it, one trained with `zstd --train` on
 * the run's own events, or no dictionary scenario without the zstd CLI.
 *
 * Rewrites the "jetstream" section of bench/RESULTS.md.
 */
import { execFileSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { cpus, loadavg, tmpdir } from 'node:os'
import { basename, join } from 'node:path'
import { RESULTS_PATH, writeResultsSection } from './results.js'
import { Child } from './lib/child.js'
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
const ACCOUNTS = 50
const COMMITS = 10_000
const RATE = arg('rate', 5_000)
const EVENTS = arg('events', 15_000)
const INGEST = arg('ingest', 3_000)
const RUNS = arg('runs', 1)
/** --only serve|replay|ingest (repeatable): run those parts and print, without rewriting RESULTS.md */
const only = argv.flatMap((a, i) => (argv[i - 1] === '--only' ? [a] : []))
const want = (part: string) => only.length === 0 || only.includes(part)
const REPLAY = 1_500
const TIMEOUT_MS = 180_000
const fmt = (n: number, d = 0) =>
  Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : '–'
const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b)
  return s.length === 0 ? NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2
}
const wall = () => performance.timeOrigin + performance.now()
const loads: number[] = []
const noteLoad = () => loads.push(loadavg()[0]!)

const TICK_US = 1e6 / 100 // USER_HZ
/** CPU µs so far of a whole process (every thread, ended ones included): utime + stime of /proc/<pid>/stat. */
function processCpuUs(pid: number): number {
  return statCpuUs(`/proc/${pid}/stat`)
}
/** CPU µs so far of a process's main thread (the event loop: ingest's main side and all of Jetstream). */
function mainThreadCpuUs(pid: number): number {
  return statCpuUs(`/proc/${pid}/task/${pid}/stat`)
}
function statCpuUs(path: string): number {
  const stat = readFileSync(path, 'utf8')
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return (Number(fields[11]) + Number(fields[12])) * TICK_US
}

// ---------------------------------------------------------------------------------------------------------
// the fixture (the relay benchmark's cached signed commits), generated once by relay-upstream.ts if missing

if (!loadFixture(ACCOUNTS, COMMITS)) {
  console.log(`generating the relay fixture (${ACCOUNTS} accounts, ${COMMITS} commits; cached in bench/.cache)...`)
  const gen = new Child('lib/relay-upstream.ts', [JSON.stringify({ accounts: ACCOUNTS, commits: COMMITS, rate: 0, limit: 1 })], { timeoutMs: TIMEOUT_MS })
  await gen.next(1_800_000)
  await gen.stop()
}
const fixture = loadFixture(ACCOUNTS, COMMITS)!
const dids = fixture.index.accounts.map((a) => a.did)
const oneOpCommits = fixture.index.frames.filter((f, i) => f.t === '#commit' && i >= 3 * ACCOUNTS).length
const workDir = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-'))

/** The /subscribe dictionary: --dictionary, or one trained with the zstd CLI on this fixture's events. */
async function dictionaryFile(): Promise<{ path: string; label: string } | null> {
  const given = argStr('dictionary')
  if (given) return { path: given, label: `\`${basename(given)}\` (given with --dictionary)` }
  const { decodeFrame } = await import('../packages/core/src/stream/index.js')
  const { toJetstreamItems, v1Bytes } = await import('../services/relay/src/jetstream/events.js')
  const samples = join(workDir, 'samples')
  mkdirSync(samples, { recursive: true })
  let n = 0
  fixture.frames.forEach((bytes, i) => {
    const f = fixture.index.frames[i]!
    if (f.t !== '#commit' || i < 3 * ACCOUNTS || n >= 2000) return
    const frame = decodeFrame(bytes)
    if (frame.op !== 1) return
    for (const it of toJetstreamItems({ seq: i + 1, timeUs: 1.7e15 + i, type: '#commit', did: f.did, body: frame.body as Record<string, unknown> })) {
      writeFileSync(join(samples, `${n++}.json`), v1Bytes(it)!)
    }
  })
  const out = join(workDir, 'trained.zdict')
  try {
    execFileSync('zstd', ['--train', '-q', '-r', samples, '-o', out, '--maxdict=65536', '--dictID=4242'], { stdio: 'pipe' })
    return { path: out, label: 'a 64 KiB dictionary trained with `zstd --train` on 2,000 of the run\'s own events' }
  } catch (err) {
    console.log(`no dictionary scenario: zstd --train failed or is not installed (${(err as Error).message.split('\n')[0]})`)
    return null
  }
}
const dictionary = await dictionaryFile()

const relayEnv = (data: string, extra: Record<string, string> = {}): Record<string, string> => ({
  RELAY_PORT: '0',
  RELAY_DATA_DIRECTORY: data,
  RELAY_PLC_URL: 'http://127.0.0.1:1',
  RELAY_JETSTREAM_MAX_PER_IP: '1000',
  RELAY_CONSUMER_MAX_QUEUED_BYTES: String(1 << 30),
  RELAY_COLLECTION_BACKFILL: 'false',
  RELAY_MAX_CONNECTIONS_PER_IP: '1000',
  LOG_LEVEL: 'warn',
  BENCH_ACCOUNTS: String(ACCOUNTS),
  BENCH_COMMITS: String(COMMITS),
  ...extra,
})

async function startRelay(extra: Record<string, string> = {}): Promise<{ child: Child; url: string; pid: number; data: string }> {
  const data = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-relay-'))
  const child = new Child('lib/jetstream-relay.ts', [], { env: relayEnv(data, extra), timeoutMs: TIMEOUT_MS })
  const r = await child.next<{ url: string; pid: number }>()
  return { child, url: r.url, pid: r.pid, data }
}

async function stopRelay(r: { child: Child; data: string }) {
  await r.child.stop()
  rmSync(r.data, { recursive: true, force: true })
}

/** Subscribers in their own process: resolves once they are all connected. */
async function subscribers(urls: string[], expect: number, idleMs = 3_000) {
  const child = new Child('lib/jetstream-subscribers.mjs', [JSON.stringify({ urls, expect, idleMs })], { tsx: false, timeoutMs: TIMEOUT_MS })
  const ready = await child.next<{ open: number; failed: number }>()
  if (ready.failed > 0) throw new Error(`${ready.failed} subscribers were refused`)
  return child
}

// ---------------------------------------------------------------------------------------------------------
// Part 1: serving at a fixed rate

interface Scenario {
  name: string
  subscribers: number
  /** each subscriber wants one DID (of ACCOUNTS): each event goes to subscribers/ACCOUNTS of them */
  filtered: boolean
  compress: boolean
  v2?: boolean
  /** events of this scenario (100 unfiltered subscribers: fewer, they cannot be served at the full rate) */
  events: number
  dictionary?: boolean
}

interface ServeRow {
  s: Scenario
  events: number
  feedSeconds: number
  maxLagMs: number
  deliveredPerSec: number
  messages: number
  expected: number
  bytesPerMessage: number
  processUs: number
  hubUs: number
}

function urlsFor(base: string, s: Scenario): string[] {
  return Array.from({ length: s.subscribers }, (_, i) => {
    const q = new URLSearchParams()
    if (s.v2) {
      if (s.filtered) q.set('dids', dids[i % ACCOUNTS]!)
    } else {
      if (s.filtered) q.set('wantedDids', dids[i % ACCOUNTS]!)
      if (s.compress) q.set('compress', 'true')
    }
    return `${base}${s.v2 ? '/xrpc/network.bsky.jetstream.subscribeEvents' : '/subscribe'}?${q}`
  })
}

function expectedMessages(s: Scenario): number {
  if (!s.filtered) return s.events * s.subscribers
  // event k is commit k of the one-op commits, in the feeder's order; its DID is wanted by the
  // subscribers i with i % ACCOUNTS == account index
  const commitDids = fixture.index.frames.filter((f, i) => f.t === '#commit' && i >= 3 * ACCOUNTS).map((f) => f.did)
  const perDid = new Map<string, number>()
  for (let i = 0; i < s.subscribers; i++) perDid.set(dids[i % ACCOUNTS]!, (perDid.get(dids[i % ACCOUNTS]!) ?? 0) + 1)
  let n = 0
  for (let k = 0; k < s.events; k++) n += perDid.get(commitDids[k % commitDids.length]!) ?? 0
  return n
}

async function serve(relay: { child: Child; url: string; pid: number }, s: Scenario): Promise<ServeRow> {
  const expected = expectedMessages(s)
  const subs = s.subscribers > 0 ? await subscribers(urlsFor(relay.url.replace(/^http/, 'ws'), s), expected) : null
  await new Promise((r) => setTimeout(r, 300))
  noteLoad()
  const cpu0 = processCpuUs(relay.pid)
  const t0 = wall()
  const fed = await relay.child.ask<{ events: number; seconds: number; hubUs: number; maxLagMs: number }>('feed', { rate: RATE, events: s.events })
  let res = { messages: 0, bytes: 0, last: t0 + fed.seconds * 1000 }
  if (subs) {
    res = await subs.next<{ messages: number; bytes: number; last: number }>()
    await subs.stop()
  }
  const cpu1 = processCpuUs(relay.pid)
  return {
    s,
    events: fed.events,
    feedSeconds: fed.seconds,
    maxLagMs: fed.maxLagMs,
    deliveredPerSec: fed.events / ((Math.max(res.last, t0 + fed.seconds * 1000) - t0) / 1000),
    messages: res.messages,
    expected,
    bytesPerMessage: res.bytes / Math.max(1, res.messages),
    processUs: (cpu1 - cpu0) / fed.events,
    hubUs: fed.hubUs / fed.events,
  }
}

const ALL_EVENTS = Math.max(1_000, Math.round(EVENTS / 5))
const scenariosA: Scenario[] = [
  { name: '1 subscriber, all events', subscribers: 1, filtered: false, compress: false, events: EVENTS },
  { name: '1 subscriber, all events, zstd', subscribers: 1, filtered: false, compress: true, events: EVENTS },
  { name: '100 subscribers, one DID each (filtered)', subscribers: 100, filtered: true, compress: false, events: EVENTS },
  { name: '100 subscribers, one DID each, zstd', subscribers: 100, filtered: true, compress: true, events: EVENTS },
  { name: '100 subscribers, one DID each, v2 (subscribeEvents)', subscribers: 100, filtered: true, compress: false, v2: true, events: EVENTS },
  { name: '100 subscribers, all events', subscribers: 100, filtered: false, compress: false, events: ALL_EVENTS },
  { name: '100 subscribers, all events, zstd', subscribers: 100, filtered: false, compress: true, events: ALL_EVENTS },
]
const scenariosB: Scenario[] = [
  { name: '1 subscriber, all events, zstd + dictionary', subscribers: 1, filtered: false, compress: true, events: EVENTS, dictionary: true },
  { name: '100 subscribers, one DID each, zstd + dictionary', subscribers: 100, filtered: true, compress: true, events: EVENTS, dictionary: true },
]
const baseline = (events: number): Scenario => ({ name: 'no subscriber (feeder and idle relay)', subscribers: 0, filtered: false, compress: false, events })

/** One relay process: a discarded warm-up, then the no-subscriber baseline around the scenarios, RUNS times. */
async function servePart(scenarios: Scenario[], extra: Record<string, string>): Promise<{ rows: ServeRow[][]; baselineUs: number; baselines: ServeRow[] }> {
  const relay = await startRelay(extra)
  try {
    await serve(relay, { ...scenarios[0]!, name: 'warm-up', events: Math.min(EVENTS, 5_000) })
    const rows: ServeRow[][] = scenarios.map(() => [])
    const baselines: ServeRow[] = []
    for (let run = 0; run < RUNS; run++) {
      baselines.push(await serve(relay, baseline(EVENTS)))
      for (const [i, s] of scenarios.entries()) {
        const r = await serve(relay, s)
        rows[i]!.push(r)
        console.log(
          `${s.name.padEnd(52)} fed ${r.events} at ${fmt(r.events / r.feedSeconds)}/s (max lag ${fmt(r.maxLagMs)} ms), delivered ${fmt(r.deliveredPerSec)} events/s, ` +
            `${r.messages}/${r.expected} msgs, ${fmt(r.bytesPerMessage)} B/msg, process ${fmt(r.processUs)} µs/event, hub ${fmt(r.hubUs)} µs/event (load ${fmt(loadavg()[0]!, 1)})`,
        )
      }
      baselines.push(await serve(relay, baseline(EVENTS)))
    }
    const baselineUs = median(baselines.map((b) => b.processUs))
    console.log(`baseline (no subscriber): process ${fmt(baselineUs)} µs/event`)
    return { rows, baselineUs, baselines }
  } finally {
    await stopRelay(relay)
  }
}

console.log(`Part 1: serving at ${RATE} events/s offered, ${EVENTS} events per scenario`)
const partA = want('serve') ? await servePart(scenariosA, {}) : { rows: [], baselineUs: NaN, baselines: [] }
const partB = want('serve') && dictionary ? await servePart(scenariosB, { RELAY_JETSTREAM_ZSTD_DICTIONARY: dictionary.path }) : null

// ---------------------------------------------------------------------------------------------------------
// Part 3 (run before Part 2: same relay kind): replay with and without the converted-event cache

interface ReplayRow {
  cache: boolean
  conversions: number
  messages: number
  seconds: number
  cpuUsPerMessage: number
}

async function replayPart(): Promise<ReplayRow[]> {
  const relay = await startRelay()
  const out: ReplayRow[] = []
  try {
    for (const cache of [true, false, false, true]) {
      await relay.child.ask('cache', { on: cache })
      const { first } = await relay.child.ask<{ first: number }>('log', { events: REPLAY })
      const before = await relay.child.ask<{ eventsConverted: number }>('stats')
      noteLoad()
      const cpu0 = processCpuUs(relay.pid)
      const t0 = wall()
      const urls = Array.from({ length: 100 }, () => `${relay.url.replace(/^http/, 'ws')}/subscribe?cursor=${first}`)
      const subs = new Child('lib/jetstream-subscribers.mjs', [JSON.stringify({ urls, expect: REPLAY * 100, idleMs: 5_000 })], { tsx: false, timeoutMs: TIMEOUT_MS })
      await subs.next() // ready (replays start at connection)
      const res = await subs.next<{ messages: number; last: number }>()
      await subs.stop()
      const cpu = processCpuUs(relay.pid) - cpu0
      const after = await relay.child.ask<{ eventsConverted: number }>('stats')
      const row = { cache, conversions: after.eventsConverted - before.eventsConverted, messages: res.messages, seconds: (res.last - t0) / 1000, cpuUsPerMessage: cpu / res.messages }
      out.push(row)
      console.log(`replay, 100 subscribers, cache ${cache ? 'on ' : 'off'}: ${row.conversions} conversions, ${row.messages} messages in ${fmt(row.seconds, 1)} s, ${fmt(row.cpuUsPerMessage, 1)} µs CPU/message`)
    }
  } finally {
    await stopRelay(relay)
  }
  return out
}
const replayRows = want('replay') ? await replayPart() : []

// ---------------------------------------------------------------------------------------------------------
// Part 2: the relay ingesting the same signed commits (real verification), without and with 100 filtered
// subscribers

interface IngestRow {
  subscribers: number
  events: number
  seconds: number
  processUs: number
  mainUs: number
  messages: number
}

async function ingestPart(): Promise<IngestRow[]> {
  if (INGEST <= 0 || !want('ingest')) return []
  const limit = 3 * ACCOUNTS + INGEST
  const up = new Child('lib/relay-upstream.ts', [JSON.stringify({ accounts: ACCOUNTS, commits: COMMITS, rate: 0, limit })], { timeoutMs: TIMEOUT_MS })
  const upstream = await up.next<{ url: string; frames: number }>(1_800_000)
  const rows: IngestRow[] = []
  try {
    for (const n of [0, 100, 100, 0]) {
      const relay = await startRelay({
        RELAY_PLC_URL: upstream.url,
        RELAY_DEV_MODE: 'true',
        RELAY_HOST_LIMIT_PER_SECOND: 'none',
        RELAY_HOST_LIMIT_PER_HOUR: 'none',
        RELAY_HOST_LIMIT_PER_DAY: 'none',
        RELAY_HOST_ACCOUNT_LIMIT: 'none',
        RELAY_CONSUMER_MAX_QUEUED_EVENTS: String(upstream.frames * 2),
      })
      try {
        const s: Scenario = { name: '', subscribers: n, filtered: true, compress: false, events: 0 }
        const subs = n > 0 ? await subscribers(urlsFor(relay.url.replace(/^http/, 'ws'), s), Number.MAX_SAFE_INTEGER, 3_000) : null
        noteLoad()
        const cpu0 = processCpuUs(relay.pid)
        const main0 = mainThreadCpuUs(relay.pid)
        const t0 = wall()
        await relay.child.ask('crawl', { url: upstream.url })
        const done = await relay.child.ask<{ seq: number; stalled?: boolean }>('wait-seq', { seq: upstream.frames })
        const seconds = (wall() - t0) / 1000
        const cpu = processCpuUs(relay.pid) - cpu0
        const main = mainThreadCpuUs(relay.pid) - main0
        let messages = 0
        if (subs) {
          messages = (await subs.next<{ messages: number }>()).messages
          await subs.stop()
        }
        if (done.stalled) console.log(`ingest stalled at ${done.seq}/${upstream.frames}`)
        const row = { subscribers: n, events: done.seq, seconds, processUs: cpu / done.seq, mainUs: main / done.seq, messages }
        rows.push(row)
        console.log(
          `ingest, ${String(n).padStart(3)} filtered subscribers: ${row.events} events in ${fmt(seconds, 1)} s (${fmt(row.events / seconds)}/s), ` +
            `process ${fmt(row.processUs)} µs/event (main thread ${fmt(row.mainUs)}), ${messages} messages (load ${fmt(loadavg()[0]!, 1)})`,
        )
      } finally {
        await stopRelay(relay)
      }
    }
  } finally {
    await up.stop()
  }
  return rows
}
const ingestRows = await ingestPart()
rmSync(workDir, { recursive: true, force: true })
if (only.length > 0) {
  console.log('--only: bench/RESULTS.md not rewritten')
  process.exit(0)
}

// ---------------------------------------------------------------------------------------------------------
// results

/** The relay's ingest CPU per event (all threads) from its section of bench/RESULTS.md, if there is one. */
function relaySectionIngestUs(): { us: number; row: string } | null {
  if (!existsSync(RESULTS_PATH)) return null
  const text = readFileSync(RESULTS_PATH, 'utf8')
  const section = text.slice(text.indexOf('<!-- bench:relay:start -->'), text.indexOf('<!-- bench:relay:end -->'))
  const line = section.split('\n').find((l) => l.startsWith('| workers (default), 1 consumer |'))
  if (!line) return null
  const cells = line.split('|').map((c) => c.trim())
  const num = (c: string | undefined) => Number(String(c ?? '').replace(/[*,]/g, '').split(' ')[0])
  const us = num(cells[4]) + num(cells[5]) + num(cells[6])
  return Number.isFinite(us) && us > 0 ? { us, row: line } : null
}

interface Summary {
  s: Scenario
  r: ServeRow
  servingUs: number
}
const summarize = (rows: ServeRow[][], baselineUs: number): Summary[] =>
  rows.map((rs) => {
    const pick = rs.slice().sort((a, b) => a.processUs - b.processUs)[Math.floor((rs.length - 1) / 2)]! // the median run
    return { s: pick.s, r: pick, servingUs: pick.processUs - baselineUs }
  })
const sumA = summarize(partA.rows, partA.baselineUs)
const sumB = partB ? summarize(partB.rows, partB.baselineUs) : []
const all = [...sumA, ...sumB]

const servingTable = [
  '| scenario | events | fed at events/s (max lag) | delivered events/s | messages received / expected | bytes / message | relay process CPU µs / event | serving CPU µs / event (minus no-subscriber feed) | in the hub µs / event |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
  `| no subscriber (the feeder and the idle relay) | ${EVENTS} | ${fmt(median(partA.baselines.map((b) => b.events / b.feedSeconds)))} | – | – | – | ${fmt(partA.baselineUs)} | 0 | ${fmt(median(partA.baselines.map((b) => b.hubUs)), 1)} |`,
  ...all.map(
    ({ s, r, servingUs }) =>
      `| ${s.name} | ${r.events} | ${fmt(r.events / r.feedSeconds)} (${fmt(r.maxLagMs)} ms) | ${fmt(r.deliveredPerSec)} | ${r.messages} / ${r.expected} | ${fmt(r.bytesPerMessage)} | ${fmt(r.processUs)} | **${fmt(servingUs)}** | ${fmt(r.hubUs)} |`,
  ),
].join('\n')

const goal = sumA.find((x) => x.s.name === '100 subscribers, one DID each (filtered)')!
const goalZ = sumA.find((x) => x.s.name === '100 subscribers, one DID each, zstd')!
const goalD = sumB.find((x) => x.s.name.startsWith('100 subscribers, one DID each, zstd + dictionary'))
const without = ingestRows.filter((r) => r.subscribers === 0)
const withSubs = ingestRows.filter((r) => r.subscribers === 100)
const ingestUs = median(without.map((r) => r.processUs))
const ingestDiffUs = median(withSubs.map((r) => r.processUs)) - ingestUs
const ingestMainDiffUs = median(withSubs.map((r) => r.mainUs)) - median(without.map((r) => r.mainUs))
const fromRelay = relaySectionIngestUs()
const pct = (a: number, b: number) => `${fmt((a / b) * 100)}%`

const ingestTable = ingestRows.length
  ? [
      '| run | events | events/s reached | relay process CPU µs / event | of which main thread | messages to subscribers |',
      '| --- | ---: | ---: | ---: | ---: | ---: |',
      ...ingestRows.map(
        (r) =>
          `| ${r.subscribers === 0 ? 'no Jetstream subscriber' : '100 subscribers, one DID each'} | ${r.events} | ${fmt(r.events / r.seconds)} | ${fmt(r.processUs)} | ${fmt(r.mainUs)} | ${r.messages} |`,
      ),
    ].join('\n')
  : '(not run: --ingest 0)'

const replayTable = [
  `| converted-event cache | conversions for ${REPLAY} logged events | messages | seconds | relay CPU µs / message |`,
  '| --- | ---: | ---: | ---: | ---: |',
  ...replayRows.map((r) => `| ${r.cache ? 'on (default)' : 'off'} | ${r.conversions} | ${r.messages} | ${fmt(r.seconds, 1)} | ${fmt(r.cpuUsPerMessage, 1)} |`),
].join('\n')

const goalLines = [
  `- serving 100 filtered subscribers (one DID each, /subscribe) at ${fmt(RATE)} events/s offered: **${fmt(goal.servingUs)} µs/event** ` +
    `(zstd: ${fmt(goalZ.servingUs)}${goalD ? `; zstd + dictionary: ${fmt(goalD.servingUs)}` : ''}), i.e. ${fmt((goal.servingUs * RATE) / 1e6, 2)} core at that rate;`,
  ingestRows.length
    ? `- the relay's ingest in this run (same commits, real verification, worker pool, as fast as it goes): **${fmt(ingestUs)} µs/event** ` +
      `without subscribers → serving is **${pct(goal.servingUs, ingestUs)}** of it (zstd ${pct(goalZ.servingUs, ingestUs)}${goalD ? `, dictionary ${pct(goalD.servingUs, ingestUs)}` : ''}); ` +
      `with 100 filtered subscribers during ingest the process CPU rose by ${fmt(ingestDiffUs)} µs/event (${pct(ingestDiffUs, ingestUs)}), its main thread's (where Jetstream runs) by ${fmt(ingestMainDiffUs)};`
    : '- no ingest run (--ingest 0);',
  fromRelay
    ? `- against the relay section of this file (\`pnpm bench relay\`, workers (default), 1 consumer: main + workers + other = ${fmt(fromRelay.us)} µs/event): **${pct(goal.servingUs, fromRelay.us)}** (zstd ${pct(goalZ.servingUs, fromRelay.us)}).`
    : '- no relay section in this file to compare with.',
]

writeResultsSection(
  'jetstream',
  `## jetstream (relay GET /subscribe and subscribeEvents)

\`pnpm bench jetstream\` — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}; load average (1 min) during the runs ${fmt(Math.min(...loads), 1)}–${fmt(Math.max(...loads), 1)}.
Each part in its own process: the relay (services/relay from source, \`bench/lib/jetstream-relay.ts\`), the subscribers
(\`bench/lib/jetstream-subscribers.mjs\`), and for ingest the upstream (\`bench/lib/relay-upstream.ts\`). Events: the relay
benchmark's real signed one-post commits of ${ACCOUNTS} accounts (${oneOpCommits} in bench/.cache).

**Serving at a fixed rate**, independent of ingest: the relay process's feeder hands each commit to the Jetstream hub
through the call the outbox makes for every committed event (convert once: CAR scan, record decode, JSON encode; filter;
encode and compress once per wire shape; write to each matching socket), ${fmt(RATE)} events/s offered in 10 ms ticks.
CPU: the relay process's user + system (all threads, /proc/<pid>/stat) per event; "serving" subtracts the same feed with no
subscriber (median of ${partA.baselines.length} such runs: ${fmt(partA.baselineUs)} µs/event); "in the hub" is the CPU inside
the publish calls. "100 subscribers, one DID each": subscriber i wants account i mod ${ACCOUNTS}'s DID, so each event goes to 2 of
them. Unfiltered 100-subscriber rows feed ${ALL_EVENTS} events (they cannot be served at the full rate). Dictionary rows: ${dictionary ? dictionary.label : 'none (no zstd CLI)'}.
${RUNS > 1 ? `Median of ${RUNS} runs per row.` : 'One run per row.'}

${servingTable}

**Against the issue's goal** (serving 100 filtered subscribers < 25% of the relay's ingest CPU at 5,000 events/s):
${goalLines.join('\n')}

**Ingest, for comparison**: the relay following the upstream process, ${INGEST} signed one-post commits (+ each account's
#identity, #account and first commit), as fast as it verifies them, without and with 100 filtered subscribers (/subscribe).

${ingestTable}

**Replay**: 100 subscribers replaying the same ${REPLAY} logged events (logged while nobody was subscribed) from its first seq.

${replayTable}`,
)
console.log('results written to bench/RESULTS.md (section "jetstream")')
process.exit(0)
