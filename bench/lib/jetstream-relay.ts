/**
 * Child process of bench/jetstream.ts: one relay (services/relay from source, Jetstream on) configured from
 * the environment, plus a feeder that hands the relay's Jetstream hub pre-verified outbound events at a
 * fixed rate, independently of how fast the relay could ingest them.
 *
 * The feeder calls the hub's `publish(evt)`, the call the outbox makes for every event right after it is
 * committed (live serving): per event the hub converts it (CAR scan, record decode, JSON encode), filters it
 * for each subscriber, encodes each wire shape and compresses it once, and writes it to every matching
 * socket. The events are the relay benchmark's real signed commits (bench/.cache, verified when generated),
 * given as the outbox gives a forwarded commit (its frame, the body decoded when the hub first reads it),
 * with this process's own increasing seq and time, so nothing of the relay's ingest (verification, the
 * event-log write) is in the measurement.
 *
 * Prints `{ ready, url, pid, dids }`, then answers one JSON line per stdin command:
 *   feed {"rate":5000,"events":15000}   publish at that rate (10 ms ticks; a late tick catches up) ->
 *                                       { events, seconds, hubUs, maxLagMs }  (hubUs: CPU inside publish)
 *   log {"events":1500}                 append events to the outbound log (nobody live: nothing converted)
 *                                       -> { first } the Jetstream seq of the first
 *   cache {"on":false}                  disable (or restore) the hub's cache of converted events -> {}
 *   crawl {"url":"http://..."}          follow an upstream host (ingest runs) -> {}
 *   wait-seq {"seq":N}                  answers once the outbound log reaches seq N or stalls for 10 s
 *                                       -> { seq }
 *   stats {}                            -> the hub's counters
 * SIGTERM closes it cleanly.
 */
import './register.js'
import { createInterface } from 'node:readline'
import { exitOnSignals } from './child.js'

const { RelayServer, readConfig } = await import('../../services/relay/src/index.js')
const { decodeFrame } = await import('../../packages/core/src/stream/index.js')
const { loadFixture } = await import('./relay-upstream.js')

const ACCOUNTS = Number(process.env.BENCH_ACCOUNTS ?? 50)
const COMMITS = Number(process.env.BENCH_COMMITS ?? 10_000)
const fixture = loadFixture(ACCOUNTS, COMMITS)
if (!fixture) throw new Error(`no cached fixture of ${ACCOUNTS} accounts and ${COMMITS} commits (bench/.cache)`)
// the one-post commits (not the accounts' first commits, #identity or #account), as frames: since the relay
// forwards an ingested #commit as a frame built from the upstream bytes, the outbox hands listeners an event
// whose body is decoded from that frame when first read, which the feeder does the same way
const commits: { did: string; frame: Uint8Array; ops: number }[] = []
fixture.frames.forEach((bytes, i) => {
  const f = fixture.index.frames[i]!
  if (f.t !== '#commit' || i < 3 * ACCOUNTS) return
  const frame = decodeFrame(bytes)
  if (frame.op !== 1) return
  const ops = (frame.body as { ops?: unknown[] }).ops
  commits.push({ did: f.did, frame: bytes, ops: Array.isArray(ops) ? ops.length : 1 })
})

/** An outbound event as the outbox publishes a forwarded commit: the body decoded on first read. */
function published(seq: number, timeUs: number, c: (typeof commits)[number]) {
  let body: Record<string, unknown> | undefined
  return {
    seq,
    timeUs,
    type: '#commit' as const,
    did: c.did,
    get body(): Record<string, unknown> {
      if (!body) {
        const f = decodeFrame(c.frame)
        body = f.op === 1 ? (f.body as Record<string, unknown>) : {}
      }
      return body
    },
  }
}

const relay = await RelayServer.create(readConfig(process.env))
await relay.start()
await relay.ctx.verifier.ready()
const hub = relay.ctx.jetstream
if (!hub) throw new Error('Jetstream is off (RELAY_JETSTREAM_ENABLED=false)')
const out = (v: unknown) => process.stdout.write(JSON.stringify(v) + '\n')
out({ ready: true, url: relay.url, pid: process.pid, dids: fixture.index.accounts.map((a) => a.did), commits: commits.length })

let seq = 1_000_000 // above anything the outbound log assigns in a run
let lastUs = 0
const nowUs = () => {
  lastUs = Math.max(lastUs + 1, Math.floor((performance.timeOrigin + performance.now()) * 1000))
  return lastUs
}

async function feed(rate: number, events: number): Promise<unknown> {
  // ticks of 10 ms: tick k publishes events up to k × rate/100, then waits for start + k × 10 ms (a late
  // tick does not wait: the feeder catches up, and the time it is behind is reported)
  const perTick = rate / 100
  let hubUs = 0
  let maxLagMs = 0
  let sent = 0
  const start = performance.now()
  for (let tick = 1; sent < events; tick++) {
    const target = Math.min(events, Math.round(tick * perTick))
    for (; sent < target; sent++) {
      const c = commits[sent % commits.length]!
      const evt = published(seq++, nowUs(), c)
      lastUs += Math.max(0, c.ops - 1) // one time_us per op
      const t = process.cpuUsage()
      hub!.publish(evt)
      const d = process.cpuUsage(t)
      hubUs += d.user + d.system
    }
    const wait = start + tick * 10 - performance.now()
    if (wait > 0) await new Promise((r) => setTimeout(r, wait))
    else {
      maxLagMs = Math.max(maxLagMs, -wait)
      await new Promise((r) => setImmediate(r))
    }
  }
  return { events: sent, seconds: (performance.now() - start) / 1000, hubUs, maxLagMs }
}

async function log(events: number): Promise<unknown> {
  const firstSeq = relay.ctx.outbox.log.lastAssignedSeq() + 1
  const pending: Promise<unknown>[] = []
  for (let i = 0; i < events; i++) {
    const c = commits[i % commits.length]!
    const frame = decodeFrame(c.frame)
    if (frame.op === 1) pending.push(relay.ctx.outbox.emit('#commit', c.did, frame.body as Record<string, unknown>))
    if (pending.length >= 500) await Promise.all(pending.splice(0))
  }
  await Promise.all(pending)
  return { first: firstSeq * 1024 }
}

const originalCache = (hub as unknown as { cache: unknown }).cache
const commands: Record<string, (a: Record<string, unknown>) => Promise<unknown> | unknown> = {
  feed: (a) => feed(Number(a.rate), Number(a.events)),
  log: (a) => log(Number(a.events)),
  cache: (a) => {
    Object.assign(hub, { cache: a.on ? originalCache : { get: () => undefined, set: () => undefined } })
    return {}
  },
  crawl: async (a) => {
    await relay.ctx.hostManager.addConfiguredHosts([String(a.url)])
    return {}
  },
  'wait-seq': async (a) => {
    const want = Number(a.seq)
    let last = -1
    let since = performance.now()
    for (;;) {
      const s = relay.ctx.outbox.log.lastAssignedSeq()
      if (s >= want) return { seq: s }
      if (s !== last) {
        last = s
        since = performance.now()
      } else if (performance.now() - since > 10_000) return { seq: s, stalled: true }
      await new Promise((r) => setTimeout(r, 20))
    }
  },
  stats: () => hub!.stats(),
}

// one command at a time, in order
let queue: Promise<unknown> = Promise.resolve()
createInterface({ input: process.stdin }).on('line', (line) => {
  const m = /^(\S+)\s*(.*)$/.exec(line.trim())
  if (!m) return
  const fn = commands[m[1]!]
  const args = (m[2] ? JSON.parse(m[2]) : {}) as Record<string, unknown>
  queue = queue.then(async () => {
    if (!fn) return out({ error: `unknown command ${m[1]}` })
    try {
      out(await fn(args))
    } catch (err) {
      out({ error: String((err as Error).stack ?? err) })
    }
  })
})

exitOnSignals(() => relay.close())
