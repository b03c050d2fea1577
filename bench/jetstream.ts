/**
 * The relay's Jetstream endpoint (GET /subscribe): what serving JSON subscribers costs the relay.
 *
 * A RelayServer (from source, no upstream host) has pre-built, valid 1-op `#commit` events of 20 accounts
 * emitted into its outbound log as fast as it takes them; subscribers run in a child process (so the relay
 * process's CPU is its own) and count what they receive. Per scenario:
 *   - events/s: outbound events delivered per second to every subscriber (first emit -> last message);
 *   - bytes/event: bytes of one Jetstream message on the wire (JSON, or zstd);
 *   - serving µs/event: CPU (user+sys, process.cpuUsage around each call) spent in the Jetstream hub per
 *     outbound event (convert the commit: CAR read, record decode, JSON encode, zstd; filter; hand to every
 *     matching socket);
 *   - process CPU µs/event: the relay process's whole CPU (user+sys) per event, outbound log write included.
 *
 *   node --import tsx bench/jetstream.ts [--events 1500] [--accounts 20]
 *
 * Rewrites the "jetstream" section of bench/RESULTS.md.
 */
import './lib/register.js'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { BenchAccount } from './lib/fixtures.js'
import { writeResultsSection } from './results.js'

const relayMod = (await import('../services/relay/src/index.js')) as typeof import('../services/relay/src/index.js')

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const EVENTS = arg('events', 1500)
const ACCOUNTS = arg('accounts', 20)

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
}

const SCENARIOS: Scenario[] = [
  { name: '1 subscriber, all events', subscribers: 1, compress: false, filtered: false },
  { name: '1 subscriber, all events, zstd', subscribers: 1, compress: true, filtered: false },
  { name: '100 subscribers, all events', subscribers: 100, compress: false, filtered: false },
  { name: '100 subscribers, all events, zstd', subscribers: 100, compress: true, filtered: false },
  { name: '100 subscribers, one DID each (filtered)', subscribers: 100, compress: false, filtered: true },
  { name: '100 subscribers, one DID each, zstd', subscribers: 100, compress: true, filtered: true },
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
    relayMod.readConfig({ RELAY_PORT: '0', RELAY_DATA_DIRECTORY: dir, RELAY_PLC_URL: 'http://127.0.0.1:1', RELAY_JETSTREAM_MAX_PER_IP: '1000', LOG_LEVEL: 'silent' }),
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

const table = [
  '| scenario | events/s (to every subscriber) | messages received | bytes / message | Jetstream serving µs / event (relay thread) | relay process CPU µs / event |',
  '| --- | ---: | ---: | ---: | ---: | ---: |',
  ...rows.map(
    (r) =>
      `| ${r.scenario.name} | ${r.eventsPerSec.toFixed(0)} | ${r.messages} | ${r.bytesPerMessage.toFixed(0)} | ${r.servingUsPerEvent.toFixed(0)} | ${r.cpuUsPerEvent.toFixed(0)} |`,
  ),
].join('\n')

writeResultsSection(
  'jetstream',
  `## jetstream (relay GET /subscribe)

\`pnpm bench jetstream\` — ${EVENTS} one-post \`#commit\` events of ${ACCOUNTS} accounts emitted into a relay's outbound
log as fast as it takes them; subscribers in a child process; Node ${process.version}, ${new Date().toISOString().slice(0, 10)}.
"Serving" is the CPU spent in the Jetstream hub per outbound event (process.cpuUsage around each call; convert once:
CAR read, record decode, JSON encode, zstd once; filter; send to each matching socket). "Process CPU" is the
relay process's whole CPU per event, the outbound log's group-committed SQLite write included.

${table}`,
)
console.log('results written to bench/RESULTS.md (section "jetstream")')
process.exit(0)
