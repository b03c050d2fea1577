/**
 * End-to-end relay ingest: a RelayServer (services/relay, from source) follows a fake PDS that streams
 * pre-built, valid sync-1.1 `#commit`s of a few dozen accounts as fast as the relay reads them; a raw
 * WebSocket consumer of the relay's subscribeRepos counts what comes out. Measured: events/s from the
 * PDS's first frame to the last event seen downstream. Everything runs in this one process (one thread:
 * the fake PDS only writes pre-encoded frames and the consumer only decodes frames, both cheap).
 *
 * Two event-log modes are compared in the same run, alternating: one transaction per event (the relay's
 * former behaviour, `eventLogBatch: { maxSize: 1 }`) and the default group commit.
 *
 *   node --import tsx bench/relay-ingest.ts [--accounts 40] [--commits 2400] [--rounds 3] [--timeout 30]
 *
 * Prints a table and rewrites the "relay-ingest" section of bench/RESULTS.md.
 */
import './lib/register.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { cpus, tmpdir } from 'node:os'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { monitorEventLoopDelay, performance } from 'node:perf_hooks'
import { BenchAccount } from './lib/fixtures.js'
import { writeResultsSection } from './results.js'

const relayMod = (await import('../services/relay/src/index.js')) as typeof import('../services/relay/src/index.js')
const { decodeFrame, encodeMessageFrame } = await import('../packages/core/src/stream/index.js')
const relayRequire = createRequire(new URL('../services/relay/package.json', import.meta.url))
const { WebSocket, WebSocketServer } = relayRequire('ws') as typeof import('ws')

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const ACCOUNTS = arg('accounts', 40)
const COMMITS = arg('commits', 2400)
const TIMEOUT_S = arg('timeout', 30)

const now = () => new Date().toISOString()

async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  return (server.address() as AddressInfo).port
}

function close(server: Server): Promise<void> {
  return new Promise((resolve) => {
    server.closeAllConnections()
    server.close(() => resolve())
  })
}

/** did:plc documents for the accounts, served at GET /<did>. */
class FakePlc {
  readonly docs = new Map<string, { key: string; pds: string }>()
  server = createServer((req, res) => this.handle(req, res))
  url = ''
  async start() {
    this.url = `http://127.0.0.1:${await listen(this.server)}`
    return this
  }
  private handle(req: IncomingMessage, res: ServerResponse) {
    const did = decodeURIComponent((req.url ?? '/').slice(1).split('?')[0]!)
    const d = this.docs.get(did)
    if (!d) return void res.writeHead(404, { 'content-type': 'application/json' }).end('{"message":"DID not registered"}')
    res.writeHead(200, { 'content-type': 'application/did+ld+json' }).end(
      JSON.stringify({
        '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1'],
        id: did,
        alsoKnownAs: [],
        verificationMethod: [
          { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: d.key.slice('did:key:'.length) },
        ],
        service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: d.pds }],
      }),
    )
  }
}

/** describeServer + subscribeRepos replaying `frames` (seq 1..n) to a cursor-0 subscriber, with back-pressure. */
class FakePds {
  readonly frames: Uint8Array[] = []
  server = createServer((req, res) => {
    if ((req.url ?? '').startsWith('/xrpc/com.atproto.server.describeServer')) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ did: 'did:web:localhost', availableUserDomains: ['.test'] }))
    } else res.writeHead(404).end()
  })
  wss = new WebSocketServer({ noServer: true, perMessageDeflate: false })
  url = ''
  firstFrameAt = 0
  lastFrameAt = 0

  emit(t: string, body: Record<string, unknown>) {
    this.frames.push(encodeMessageFrame(t, { ...body, seq: this.frames.length + 1 }))
  }

  async start() {
    this.server.on('upgrade', (req, socket, head) => {
      const url = new URL(req.url ?? '/', 'http://x')
      if (url.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') return socket.destroy()
      this.wss.handleUpgrade(req, socket, head, (ws) => void this.stream(ws, Number(url.searchParams.get('cursor') ?? -1)))
    })
    this.url = `http://127.0.0.1:${await listen(this.server)}`
    return this
  }

  private async stream(ws: import('ws').WebSocket, cursor: number) {
    ws.on('error', () => undefined)
    if (cursor < 0) return
    for (let i = cursor; i < this.frames.length; i++) {
      if (ws.readyState !== WebSocket.OPEN) return
      if (!this.firstFrameAt) this.firstFrameAt = performance.now()
      // as fast as the relay reads: keep at most ~1 MB in the socket's send buffer
      if (ws.bufferedAmount > 1 << 20) await new Promise((resolve) => ws.send(this.frames[i]!, resolve))
      else ws.send(this.frames[i]!)
    }
    this.lastFrameAt = performance.now()
  }

  async close() {
    for (const ws of this.wss.clients) ws.terminate()
    this.wss.close()
    await close(this.server)
  }
}

interface Mode {
  name: string
  batch: { delayMs?: number; maxSize?: number }
}

// the relay as it was (one fsynced transaction per event) against group commit, alternated in the same run
const MODES: Mode[] = [
  { name: 'one transaction per event (`eventLogBatch.maxSize = 1`, the former behaviour)', batch: { maxSize: 1 } },
  { name: 'group commit (default: the events of one event-loop turn per transaction)', batch: {} },
]
const ROUNDS = arg('rounds', 3)

interface Result {
  mode: Mode
  events: number
  seconds: number
  cpuUsPerEvent: number
  processingMsMean: number
  loopDelayP99Ms: number
  batches: number
  txMs: number
}

async function runOnce(mode: Mode, plc: FakePlc, pds: FakePds): Promise<Result> {
  const expected = pds.frames.length
  const dir = mkdtempSync(join(tmpdir(), 'stratos-bench-relay-'))
  const config = relayMod.readConfig({
    RELAY_PORT: '0',
    RELAY_DATA_DIRECTORY: dir,
    RELAY_PLC_URL: plc.url,
    RELAY_DEV_MODE: 'true',
    RELAY_HOST_LIMIT_PER_SECOND: 'none',
    RELAY_HOST_LIMIT_PER_HOUR: 'none',
    RELAY_HOST_LIMIT_PER_DAY: 'none',
    RELAY_CONSUMER_MAX_QUEUED_EVENTS: String(expected * 2),
    RELAY_CONSUMER_MAX_QUEUED_BYTES: String(1 << 30),
    LOG_LEVEL: 'silent',
  })
  const relay = await relayMod.RelayServer.create(config, { eventLogBatch: mode.batch })
  await relay.start()

  // downstream consumer: live, connected before the host is added
  const seqs: number[] = []
  let lastAt = 0
  let done!: () => void
  const finished = new Promise<void>((resolve) => (done = resolve))
  const ws = new WebSocket(`${relay.url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`, { perMessageDeflate: false })
  await new Promise<void>((resolve, reject) => ws.once('open', () => resolve()).once('error', reject))
  ws.on('message', (data: Buffer) => {
    const f = decodeFrame(data)
    if (f.op !== 1) return
    seqs.push(f.body.seq as number)
    lastAt = performance.now()
    if (seqs.length === expected) done()
  })

  const loop = monitorEventLoopDelay({ resolution: 10 })
  loop.enable()
  const cpu0 = process.cpuUsage()
  pds.firstFrameAt = 0
  await relay.ctx.hostManager.addConfiguredHosts([pds.url])
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), TIMEOUT_S * 1000)))
  const outcome = await Promise.race([finished.then(() => 'ok' as const), timeout])
  clearTimeout(timer)
  const cpu = process.cpuUsage(cpu0)
  loop.disable()

  const metrics = await (await fetch(`${relay.url}/metrics`)).text()
  const metric = (re: RegExp) => [...metrics.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0)
  const dropped = metric(/^relay_events_dropped_total\{[^}]*\} (\d+)/gm)
  const procSum = metric(/^relay_event_processing_seconds_sum\{[^}]*\} ([\d.e+-]+)/gm)
  const procCount = metric(/^relay_event_processing_seconds_count\{[^}]*\} (\d+)/gm)
  const writes = relay.ctx.outbox.writeStats()

  ws.terminate()
  await relay.close()
  for (const c of pds.wss.clients) c.terminate()
  rmSync(dir, { recursive: true, force: true })

  if (outcome === 'timeout') {
    throw new Error(`timed out after ${TIMEOUT_S}s: ${seqs.length}/${expected} events delivered (dropped: ${dropped})`)
  }
  for (let i = 0; i < seqs.length; i++) {
    if (seqs[i] !== i + 1) throw new Error(`downstream seq ${seqs[i]} at position ${i + 1}: gap or duplicate`)
  }
  if (dropped !== 0) throw new Error(`${dropped} events dropped by the relay`)
  return {
    mode,
    events: seqs.length,
    seconds: (lastAt - pds.firstFrameAt) / 1000,
    cpuUsPerEvent: (cpu.user + cpu.system) / seqs.length,
    processingMsMean: procCount ? (procSum / procCount) * 1000 : NaN,
    loopDelayP99Ms: loop.percentile(99) / 1e6,
    batches: writes.batches,
    txMs: writes.txMs,
  }
}

async function main() {
  const t0 = performance.now()
  const plc = await new FakePlc().start()
  const pds = await new FakePds().start()
  const accounts: BenchAccount[] = []
  for (let i = 0; i < ACCOUNTS; i++) {
    const a = await BenchAccount.create()
    plc.docs.set(a.did, { key: a.keypair.did(), pds: pds.url })
    accounts.push(a)
    pds.emit('#identity', { did: a.did, time: now() })
    pds.emit('#account', { did: a.did, active: true, time: now() })
    pds.emit('#commit', a.initEvent as unknown as Record<string, unknown>)
  }
  // commits interleaved across accounts, as a busy PDS sends them
  for (let i = 0; i < COMMITS; i++) {
    const a = accounts[i % ACCOUNTS]!
    pds.emit('#commit', (await a.createOne()) as unknown as Record<string, unknown>)
  }
  const buildSec = (performance.now() - t0) / 1000
  console.log(
    `relay-ingest: ${ACCOUNTS} accounts, ${fmt(COMMITS)} commits, ${fmt(pds.frames.length)} upstream events ` +
      `(built in ${buildSec.toFixed(1)}s); a warm-up run, then ${ROUNDS} rounds of ${MODES.length} modes, a fresh relay each\n`,
  )

  // one discarded run first, so that neither mode pays for the JIT warm-up; then the modes alternate (ABBA...)
  await runOnce(MODES[MODES.length - 1]!, plc, pds)
  const results: Result[] = []
  for (let round = 0; round < ROUNDS; round++) {
    for (const mode of round % 2 === 0 ? MODES : [...MODES].reverse()) {
      const r = await runOnce(mode, plc, pds)
      results.push(r)
      console.log(
        `${mode.name.slice(0, 40).padEnd(40)}  ${fmt(r.events / r.seconds).padStart(6)} events/s  ` +
          `${fmt(r.cpuUsPerEvent).padStart(5)} µs CPU/event  ${fmt(r.events / r.batches, 1).padStart(5)} events/tx  ` +
          `${fmt(r.txMs / r.events, 3)} ms in tx/event  loop p99 ${fmt(r.loopDelayP99Ms)} ms`,
      )
    }
  }
  await pds.close()
  await close(plc.server)
  report(results)
}

const fmt = (n: number, d = 0) => n.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d })

function report(results: Result[]) {
  const rows = MODES.map((mode) => {
    const rs = results.filter((r) => r.mode === mode)
    const sum = (f: (r: Result) => number) => rs.reduce((a, r) => a + f(r), 0)
    const events = sum((r) => r.events)
    return {
      mode,
      perSec: events / sum((r) => r.seconds),
      runs: rs.map((r) => fmt(r.events / r.seconds)).join(', '),
      cpuUs: sum((r) => r.cpuUsPerEvent * r.events) / events,
      perTx: events / sum((r) => r.batches),
      txMsPerEvent: sum((r) => r.txMs) / events,
      procMs: sum((r) => r.processingMsMean) / rs.length,
      loopP99: Math.max(...rs.map((r) => r.loopDelayP99Ms)),
    }
  })
  const base = rows[0]!.perSec
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  writeResultsSection(
    'relay-ingest',
    [
      '## relay-ingest: end-to-end relay throughput',
      '',
      `\`node --import tsx bench/relay-ingest.ts\` — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
        `${cpu} (${cpus().length} cores, shared). A RelayServer (from source; \`relay.sqlite\` in a temp directory, ` +
        'WAL, `synchronous = FULL`) follows a fake PDS that streams, as fast as the relay reads, ' +
        `#identity + #account + a first commit for each of ${ACCOUNTS} accounts, then ${fmt(COMMITS)} single-create commits ` +
        `interleaved across them (${fmt(results[0]!.events)} events: real signed commits with sync-1.1 ops and \`prevData\`, each ` +
        'fully verified). A raw WebSocket consumer of the relay counts them (checked: seqs 1..n, no gap, no duplicate, ' +
        'nothing dropped); the time runs from the first upstream frame to the last event downstream. PDS, PLC, relay and ' +
        `consumer share one Node process. After a discarded warm-up run, ${ROUNDS} rounds alternating the two event-log modes ` +
        '(ABBA order, a fresh relay each run); ' +
        'figures are over all runs of a mode. No reference relay is measured: the ratio is against the former ' +
        'one-transaction-per-event log.',
      '',
      '| event log | events/s (runs) | vs one tx per event | CPU µs/event (process) | events per transaction | ms in write transactions per event (incl. fsync) | ingester wall ms/event | event-loop delay p99 |',
      '|---|---:|---:|---:|---:|---:|---:|---:|',
      ...rows.map(
        (r) =>
          `| ${r.mode.name} | **${fmt(r.perSec)}** (${r.runs}) | ${(r.perSec / base).toFixed(2)}x | ${fmt(r.cpuUs)} | ` +
          `${fmt(r.perTx, 1)} | ${fmt(r.txMsPerEvent, 3)} | ${fmt(r.procMs, 1)} | ${fmt(r.loopP99)} ms |`,
      ),
    ].join('\n'),
  )
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
