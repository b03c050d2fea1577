/**
 * The relay's Jetstream endpoints: what serving JSON subscribers costs the relay.
 *
 * Part 1, fan-out:
 * A RelayServer (from source, no upstream host) has pre-built, valid 1-op `#commit` events of 20 accounts
 * emitted into its outbound log as fast as it takes them; subscribers run in a child process (so the relay
 * process's CPU is its own) and count what they receive. Per scenario:
 *   - events/s: outbound events delivered per second to every subscriber (first emit -> last message);
 *   - bytes/event: bytes of one Jetstream message on the wire (JSON, or zstd);
 *   - serving µs/event: CPU (user+sys, process.cpuUsage around each call) spent in the Jetstream hub per
 *     outbound event (convert the commit: CAR read, record decode, JSON encode, zstd; filter; hand to every
 *     matching socket);
 *   - process CPU µs/event: the relay process's whole CPU (user+sys) per event, outbound log write included.
 *   A scenario with a zstd dictionary (trained here with `zstd --train` on the run's own events) is added
 *   when the zstd CLI is installed.
 *
 * Part 2, the issue's goal (100 filtered subscribers < 25% of the relay's ingest CPU at 5,000 events/s): the
 * relay ingests signed commits of --accounts accounts from a fake PDS paced at --rate events/s (real
 * verification, RELAY_VERIFY_WORKERS=0 so that all the relay's work is on the thread whose CPU is
 * attributed), once with no Jetstream subscriber and once with 100 subscribers that each want one DID.
 * Ingest CPU/event is the whole process's CPU per event without subscribers; serving CPU/event is the CPU
 * inside the hub's publish (process.cpuUsage around each call) and, as a cross-check, the difference of the
 * two runs' process CPU.
 *
 * Part 3, replay: 100 subscribers replaying the same logged range from cursor 0, with the hub's cache of
 * converted events and with it disabled: conversions and CPU per delivered event.
 *
 *   node --import tsx bench/jetstream.ts [--events 1500] [--accounts 20] [--ingest 3000] [--rate 5000]
 *
 * Rewrites the "jetstream" section of bench/RESULTS.md.
 */
import './lib/register.js'
import { execFileSync, spawn } from 'node:child_process'
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import { createRequire } from 'node:module'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { BenchAccount } from './lib/fixtures.js'
import { writeResultsSection } from './results.js'

const relayMod = (await import('../services/relay/src/index.js')) as typeof import('../services/relay/src/index.js')
const { encodeMessageFrame } = await import('../packages/core/src/stream/index.js')
const jsEvents = (await import('../services/relay/src/jetstream/events.js')) as typeof import('../services/relay/src/jetstream/events.js')
const relayRequire = createRequire(new URL('../services/relay/package.json', import.meta.url))
const { WebSocketServer } = relayRequire('ws') as typeof import('ws')

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const EVENTS = arg('events', 1500)
const ACCOUNTS = arg('accounts', 20)
const INGEST = arg('ingest', 3000)
const RATE = arg('rate', 5000)
const workDir = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-work-'))

console.log(`building ${EVENTS} commits of ${ACCOUNTS} accounts...`)
const accounts = await Promise.all(Array.from({ length: ACCOUNTS }, () => BenchAccount.create(0)))
const bodies: { did: string; body: Record<string, unknown> }[] = []
for (let i = 0; i < EVENTS; i++) {
  const a = accounts[i % ACCOUNTS]!
  const evt = await a.createOne()
  bodies.push({ did: a.did, body: evt as unknown as Record<string, unknown> })
}

interface Scenario {
  name: string
  subscribers: number
  compress: boolean
  /** each subscriber wants one DID (of ACCOUNTS): it receives 1/ACCOUNTS of the events */
  filtered: boolean
  /** RELAY_JETSTREAM_ZSTD_DICTIONARY */
  dictionary?: string
}

/** A zstd dictionary trained on this run's own Jetstream events (null without the zstd CLI). */
function trainDictionary(): string | null {
  const samples = join(workDir, 'samples')
  mkdirSync(samples, { recursive: true })
  bodies.forEach((b, i) => {
    const items = jsEvents.toJetstreamItems({ seq: i + 1, timeUs: 1.7e15 + i, type: '#commit', did: b.did, body: b.body })
    for (const it of items) writeFileSync(join(samples, `${i}.json`), jsEvents.v1Bytes(it)!)
  })
  const out = join(workDir, 'bench.zdict')
  try {
    execFileSync('zstd', ['--train', '-q', '-r', samples, '-o', out, '--maxdict=65536', '--dictID=4242'], { stdio: 'pipe' })
    return out
  } catch (err) {
    console.log(`no dictionary scenario: zstd --train failed or is not installed (${(err as Error).message.split('\n')[0]})`)
    return null
  }
}
const dictionary = trainDictionary()

const SCENARIOS: Scenario[] = [
  { name: '1 subscriber, all events', subscribers: 1, compress: false, filtered: false },
  { name: '1 subscriber, all events, zstd', subscribers: 1, compress: true, filtered: false },
  { name: '100 subscribers, all events', subscribers: 100, compress: false, filtered: false },
  { name: '100 subscribers, all events, zstd', subscribers: 100, compress: true, filtered: false },
  { name: '100 subscribers, one DID each (filtered)', subscribers: 100, compress: false, filtered: true },
  { name: '100 subscribers, one DID each, zstd', subscribers: 100, compress: true, filtered: true },
  ...(dictionary
    ? [
        { name: '1 subscriber, all events, zstd + dictionary', subscribers: 1, compress: true, filtered: false, dictionary },
        { name: '100 subscribers, all events, zstd + dictionary', subscribers: 100, compress: true, filtered: false, dictionary },
      ]
    : []),
]

interface Row {
  scenario: Scenario
  eventsPerSec: number
  messages: number
  bytesPerMessage: number
  servingUsPerEvent: number
  cpuUsPerEvent: number
}

const childPath = fileURLToPath(new URL('./lib/jetstream-subscribers.mjs', import.meta.url))

async function runScenario(s: Scenario): Promise<Row> {
  const dir = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-'))
  const relay = await relayMod.RelayServer.create(
    relayMod.readConfig({
      RELAY_PORT: '0',
      RELAY_DATA_DIRECTORY: dir,
      RELAY_PLC_URL: 'http://127.0.0.1:1',
      RELAY_JETSTREAM_MAX_PER_IP: '1000',
      LOG_LEVEL: 'silent',
      ...(s.dictionary ? { RELAY_JETSTREAM_ZSTD_DICTIONARY: s.dictionary } : {}),
    }),
  )
  try {
    await relay.start()
    const hub = relay.ctx.jetstream!
    let servingUs = 0
    const publish = hub.publish.bind(hub)
    hub.publish = (evt) => {
      const c = process.cpuUsage()
      publish(evt)
      const d = process.cpuUsage(c)
      servingUs += d.user + d.system
    }
    const base = `${relay.url.replace(/^http/, 'ws')}/subscribe`
    const urls = Array.from({ length: s.subscribers }, (_, i) => {
      const q = new URLSearchParams()
      if (s.compress) q.set('compress', 'true')
      if (s.filtered) q.set('wantedDids', accounts[i % ACCOUNTS]!.did)
      return `${base}?${q}`
    })
    const expected = s.filtered
      ? urls.reduce((n, _u, i) => n + bodies.filter((b) => b.did === accounts[i % ACCOUNTS]!.did).length, 0)
      : EVENTS * s.subscribers
    const child = spawn(process.execPath, [childPath, JSON.stringify({ urls, expect: expected, idleMs: 5_000 })], {
      stdio: ['ignore', 'pipe', 'inherit'],
    })
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
    const ready = await lines.next()
    if (!JSON.parse(String(ready.value)).ready) throw new Error('subscribers did not start')
    await new Promise((r) => setTimeout(r, 200))

    const cpu0 = process.cpuUsage()
    const t0 = performance.timeOrigin + performance.now()
    const CHUNK = 200
    for (let i = 0; i < EVENTS; i += CHUNK) {
      await Promise.all(bodies.slice(i, i + CHUNK).map((b) => relay.ctx.outbox.emit('#commit', b.did, b.body)))
    }
    const result = JSON.parse(String((await lines.next()).value)) as { messages: number; bytes: number; last: number }
    const cpu = process.cpuUsage(cpu0)
    child.kill()
    const seconds = (result.last - t0) / 1000
    return {
      scenario: s,
      eventsPerSec: EVENTS / seconds,
      messages: result.messages,
      bytesPerMessage: result.bytes / Math.max(1, result.messages),
      servingUsPerEvent: servingUs / EVENTS,
      cpuUsPerEvent: (cpu.user + cpu.system) / EVENTS,
      refused: ready.failed,
    }
  } finally {
    await relay.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const rows: Row[] = []
for (const s of SCENARIOS) {
  const row = await runScenario(s)
  rows.push(row)
  console.log(
    `${s.name.padEnd(44)} ${row.eventsPerSec.toFixed(0).padStart(6)} events/s  ${row.messages} msgs  ` +
      `${row.bytesPerMessage.toFixed(0)} B/msg  serving ${row.servingUsPerEvent.toFixed(0)} µs/event  process CPU ${row.cpuUsPerEvent.toFixed(0)} µs/event`,
  )
}

// ---------------------------------------------------------------------------------------------------------
// Part 2: the relay ingesting real signed commits at a paced rate, with and without 100 filtered subscribers

async function listen(server: Server): Promise<string> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`
}

/** did:plc documents of the accounts, served at GET /<did>. */
class FakePlc {
  readonly docs = new Map<string, { key: string; pds: string }>()
  server = createServer((req, res) => this.handle(req, res))
  url = ''
  async start(): Promise<this> {
    this.url = await listen(this.server)
    return this
  }
  private handle(req: IncomingMessage, res: ServerResponse): void {
    const did = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!)
    const d = this.docs.get(did)
    if (!d) return void res.writeHead(404).end('{"message":"DID not registered"}')
    res.writeHead(200, { 'content-type': 'application/did+ld+json' }).end(
      JSON.stringify({
        '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
        id: did,
        alsoKnownAs: [],
        verificationMethod: [{ id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: d.key.slice('did:key:'.length) }],
        service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: d.pds }],
      }),
    )
  }
}

/** describeServer + subscribeRepos sending `frames` from the cursor at RATE frames/s (10 ms ticks). */
class PacedPds {
  readonly frames: Uint8Array[] = []
  server = createServer((req, res) => {
    if ((req.url ?? '').startsWith('/xrpc/com.atproto.server.describeServer')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ did: 'did:web:localhost', availableUserDomains: ['.test'] }))
    } else res.writeHead(404).end()
  })
  wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  url = ''
  firstAt = 0
  emit(t: string, body: Record<string, unknown>): void {
    this.frames.push(encodeMessageFrame(t, { ...body, seq: this.frames.length + 1 }))
  }
  async start(): Promise<this> {
    this.server.on('upgrade', (req, socket, head) => {
      const u = new URL(req.url ?? '/', 'http://x')
      if (u.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') return socket.destroy()
      this.wss.handleUpgrade(req, socket, head, (ws) => void this.stream(ws, Number(u.searchParams.get('cursor') ?? -1)))
    })
    this.url = await listen(this.server)
    return this
  }
  private async stream(ws: import('ws').WebSocket, cursor: number): Promise<void> {
    ws.on('error', () => undefined)
    if (cursor < 0) return
    const perTick = Math.max(1, Math.round(RATE / 100))
    let next = performance.now()
    this.firstAt = next
    for (let i = cursor; i < this.frames.length; i++) {
      if (ws.readyState !== ws.OPEN) return
      if ((i - cursor) % perTick === 0) {
        next += 10
        const wait = next - performance.now()
        if (wait > 0) await new Promise((r) => setTimeout(r, wait))
      }
      if (ws.bufferedAmount > 1 << 20) await new Promise((resolve) => ws.send(this.frames[i]!, resolve))
      else ws.send(this.frames[i]!)
    }
  }
  async close(): Promise<void> {
    for (const ws of this.wss.clients) ws.terminate()
    this.wss.close()
    this.server.closeAllConnections()
    await new Promise<void>((r) => this.server.close(() => r()))
  }
}

console.log(`building ${INGEST} signed commits of ${ACCOUNTS} accounts for the ingest runs...`)
const plc = await new FakePlc().start()
const pds = await new PacedPds().start()
const ingestAccounts: BenchAccount[] = []
for (let i = 0; i < ACCOUNTS; i++) {
  const a = await BenchAccount.create()
  plc.docs.set(a.did, { key: a.keypair.did(), pds: pds.url })
  ingestAccounts.push(a)
  const time = new Date().toISOString()
  pds.emit('#identity', { did: a.did, time })
  pds.emit('#account', { did: a.did, active: true, time })
  pds.emit('#commit', a.initEvent as unknown as Record<string, unknown>)
}
for (let i = 0; i < INGEST; i++) {
  const a = ingestAccounts[i % ACCOUNTS]!
  pds.emit('#commit', (await a.createOne()) as unknown as Record<string, unknown>)
}

interface IngestRow {
  subscribers: number
  events: number
  seconds: number
  processUsPerEvent: number
  servingUsPerEvent: number
  messages: number
}

async function runIngest(subscribers: number): Promise<IngestRow> {
  const dir = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-ingest-'))
  const relay = await relayMod.RelayServer.create(
    relayMod.readConfig({
      RELAY_PORT: '0',
      RELAY_DATA_DIRECTORY: dir,
      RELAY_PLC_URL: plc.url,
      RELAY_DEV_MODE: 'true',
      RELAY_HOST_LIMIT_PER_SECOND: 'none',
      RELAY_HOST_LIMIT_PER_HOUR: 'none',
      RELAY_HOST_LIMIT_PER_DAY: 'none',
      RELAY_VERIFY_WORKERS: '0',
      RELAY_JETSTREAM_MAX_PER_IP: '1000',
      RELAY_CONSUMER_MAX_QUEUED_BYTES: String(1 << 30),
      LOG_LEVEL: 'silent',
    }),
  )
  let child: ReturnType<typeof spawn> | null = null
  try {
    await relay.start()
    const hub = relay.ctx.jetstream!
    let servingUs = 0
    const publish = hub.publish.bind(hub)
    hub.publish = (evt) => {
      const c = process.cpuUsage()
      publish(evt)
      const d = process.cpuUsage(c)
      servingUs += d.user + d.system
    }
    let lines: AsyncIterator<string> | null = null
    if (subscribers > 0) {
      const base = `${relay.url.replace(/^http/, 'ws')}/subscribe`
      const urls = Array.from({ length: subscribers }, (_, i) => `${base}?wantedDids=${ingestAccounts[i % ACCOUNTS]!.did}`)
      child = spawn(process.execPath, [childPath, JSON.stringify({ urls, expect: Number.MAX_SAFE_INTEGER, idleMs: 3_000 })], { stdio: ['ignore', 'pipe', 'inherit'] })
      lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
      if (!JSON.parse(String((await lines.next()).value)).ready) throw new Error('subscribers did not start')
      await new Promise((r) => setTimeout(r, 200))
    }
    const expected = pds.frames.length
    const cpu0 = process.cpuUsage()
    await relay.ctx.hostManager.addConfiguredHosts([pds.url])
    const log = relay.ctx.outbox.log
    let last = 0
    let lastChange = performance.now()
    let doneAt = 0
    for (;;) {
      await new Promise((r) => setTimeout(r, 20))
      const seq = log.lastAssignedSeq()
      if (seq !== last) {
        last = seq
        lastChange = performance.now()
      }
      if (seq >= expected) {
        doneAt = performance.now()
        break
      }
      if (performance.now() - lastChange > 5_000) {
        console.log(`ingest stalled at ${seq}/${expected} events`)
        doneAt = lastChange
        break
      }
    }
    const cpu = process.cpuUsage(cpu0)
    const events = log.lastAssignedSeq()
    let messages = 0
    if (lines) messages = (JSON.parse(String((await lines.next()).value)) as { messages: number }).messages
    return {
      subscribers,
      events,
      seconds: (doneAt - pds.firstAt) / 1000,
      processUsPerEvent: (cpu.user + cpu.system) / events,
      servingUsPerEvent: servingUs / events,
      messages,
    }
  } finally {
    child?.kill()
    await relay.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

// a discarded warm-up, then without and with subscribers, alternated
await runIngest(0)
const ingestRows: IngestRow[] = []
for (const n of [0, 100, 100, 0]) {
  const r = await runIngest(n)
  ingestRows.push(r)
  console.log(
    `ingest at ${RATE}/s offered, ${String(n).padStart(3)} subscribers: ${r.events} events in ${r.seconds.toFixed(1)} s (${(r.events / r.seconds).toFixed(0)}/s)  ` +
      `process ${r.processUsPerEvent.toFixed(0)} µs/event  hub ${r.servingUsPerEvent.toFixed(0)} µs/event  ${r.messages} messages`,
  )
}
await pds.close()
await new Promise<void>((r) => plc.server.close(() => r()))
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length
const without = ingestRows.filter((r) => r.subscribers === 0)
const withSubs = ingestRows.filter((r) => r.subscribers === 100)
const ingestUs = mean(without.map((r) => r.processUsPerEvent))
const servingUs = mean(withSubs.map((r) => r.servingUsPerEvent))
const diffUs = mean(withSubs.map((r) => r.processUsPerEvent)) - ingestUs
const achievedRate = mean(ingestRows.map((r) => r.events / r.seconds))

// ---------------------------------------------------------------------------------------------------------
// Part 3: 100 subscribers replaying the same logged range, with and without the cache of converted events

interface ReplayRow {
  cache: boolean
  conversions: number
  messages: number
  seconds: number
  cpuUsPerMessage: number
  cpuUsPerEvent: number
  /** subscriber connections refused (e.g. 408 when the relay is too busy to finish the handshake) */
  refused: number
}

async function runReplay(cache: boolean): Promise<ReplayRow> {
  const dir = mkdtempSync(join(tmpdir(), 'stratos-bench-jetstream-replay-'))
  const relay = await relayMod.RelayServer.create(
    relayMod.readConfig({ RELAY_PORT: '0', RELAY_DATA_DIRECTORY: dir, RELAY_PLC_URL: 'http://127.0.0.1:1', RELAY_JETSTREAM_MAX_PER_IP: '1000', LOG_LEVEL: 'silent' }),
  )
  try {
    await relay.start()
    const hub = relay.ctx.jetstream!
    // logged while nobody is subscribed: nothing is converted yet
    await Promise.all(bodies.map((b) => relay.ctx.outbox.emit('#commit', b.did, b.body)))
    if (!cache) Object.assign(hub, { cache: { get: () => undefined, set: () => undefined } })
    const before = hub.stats().eventsConverted
    const urls = Array.from({ length: 100 }, () => `${relay.url.replace(/^http/, 'ws')}/subscribe?cursor=0`)
    const cpu0 = process.cpuUsage()
    const t0 = performance.timeOrigin + performance.now()
    const child = spawn(process.execPath, [childPath, JSON.stringify({ urls, expect: EVENTS * urls.length, idleMs: 5_000 })], { stdio: ['ignore', 'pipe', 'inherit'] })
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
    const ready = JSON.parse(String((await lines.next()).value)) as { failed: number } // replays start at connection
    const result = JSON.parse(String((await lines.next()).value)) as { messages: number; last: number }
    const cpu = process.cpuUsage(cpu0)
    child.kill()
    return {
      cache,
      conversions: hub.stats().eventsConverted - before,
      messages: result.messages,
      seconds: (result.last - t0) / 1000,
      cpuUsPerMessage: (cpu.user + cpu.system) / result.messages,
      cpuUsPerEvent: (cpu.user + cpu.system) / EVENTS,
      refused: ready.failed,
    }
  } finally {
    await relay.close()
    rmSync(dir, { recursive: true, force: true })
  }
}

const replayRows: ReplayRow[] = []
for (const cache of [true, false, false, true]) {
  const r = await runReplay(cache)
  replayRows.push(r)
  console.log(
    `replay, 100 subscribers from cursor 0, cache ${cache ? 'on ' : 'off'}: ${r.conversions} conversions, ${r.messages} messages in ${r.seconds.toFixed(1)} s, ` +
      `${r.cpuUsPerMessage.toFixed(1)} µs CPU/message, ${r.refused} connections refused`,
  )
}
rmSync(workDir, { recursive: true, force: true })

const table = [
  '| scenario | events/s (to every subscriber) | messages received | bytes / message | Jetstream serving µs / event (relay thread) | relay process CPU µs / event |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.scenario.name} | ${r.eventsPerSec.toFixed(0)} | ${r.messages} | ${r.bytesPerMessage.toFixed(0)} | ${r.servingUsPerEvent.toFixed(0)} | ${r.cpuUsPerEvent.toFixed(0)} |`,
  ),
].join('\n')

const ingestTable = [
  '| run | events | events/s reached | relay process CPU µs / event | in the Jetstream hub µs / event | messages to subscribers |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...ingestRows.map(
    (r) =>
      `| ${r.subscribers === 0 ? 'no Jetstream subscriber' : '100 subscribers, one DID each'} | ${r.events} | ${(r.events / r.seconds).toFixed(0)} | ${r.processUsPerEvent.toFixed(0)} | ${r.servingUsPerEvent.toFixed(0)} | ${r.messages} |`,
  ),
].join('\n')

const replayTable = [
  '| converted-event cache | conversions for ' + EVENTS + ' logged events | messages | seconds | CPU µs / message | CPU µs / logged event (100 subscribers) | connections refused |',
  '| --- | ---: | ---: | ---: | ---: | ---: | ---: |',
  ...replayRows.map(
    (r) =>
      `| ${r.cache ? 'on (default)' : 'off'} | ${r.conversions} | ${r.messages} | ${r.seconds.toFixed(1)} | ${r.cpuUsPerMessage.toFixed(1)} | ${r.cpuUsPerEvent.toFixed(0)} | ${r.refused} |`,
  ),
].join('\n')

writeResultsSection(
  'jetstream',
  `## jetstream (relay GET /subscribe and subscribeEvents)

\`pnpm bench jetstream\` — ${EVENTS} one-post \`#commit\` events of ${ACCOUNTS} accounts emitted into a relay's outbound
log as fast as it takes them; subscribers in a child process; Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.
"Serving" is the CPU spent in the Jetstream hub per outbound event (process.cpuUsage around each call; convert once:
CAR read, record decode, JSON encode, zstd once; filter; send to each matching socket). "Process CPU" is the
relay process's whole CPU per event, the outbound log's group-committed SQLite write included.
${dictionary ? 'The dictionary scenarios use a 64 KiB dictionary trained with `zstd --train` on the run\'s own events.' : 'No dictionary scenario (the zstd CLI was not available to train one).'}

${table}

**Serving cost against ingest** (the issue's goal: 100 filtered subscribers < 25% of ingest CPU at 5,000 events/s).
The relay ingests ${INGEST} signed one-post commits (+ ${ACCOUNTS} accounts' identity, account and first commits) from a fake
PDS offering ${RATE} events/s (real verification, \`RELAY_VERIFY_WORKERS=0\` so all of the relay's work is on the measured
thread; the fake PDS runs in the same process, a ws.send per frame), alternately without Jetstream subscribers and with
100 that each want one DID (v1, in a child process). A warm-up run is discarded.

${ingestTable}

Ingest CPU **${ingestUs.toFixed(0)} µs/event** (no subscriber). Serving the 100 filtered subscribers: **${servingUs.toFixed(0)} µs/event**
inside the hub (**${((servingUs / ingestUs) * 100).toFixed(0)}%** of ingest); the difference of the runs' process CPU says
${diffUs.toFixed(0)} µs/event (${((diffUs / ingestUs) * 100).toFixed(0)}%). Rate reached: ${achievedRate.toFixed(0)} events/s of the ${RATE} offered.

**Replay**: 100 subscribers replaying the same ${EVENTS} logged events from cursor 0 (logged while nobody was subscribed).

${replayTable}`,
)
console.log('results written to bench/RESULTS.md (section "jetstream")')
process.exit(0)
