/**
 * Child process of bench/relay.ts: N raw subscribeRepos consumers of a relay. Two instruments:
 *   raw (default)  bench/lib/raw-ws.ts: a TCP socket with the WebSocket frames read by hand. EVERY consumer
 *                  reads the seq of every frame in place (no decode, no allocation) and
 *                  checks it is 1, 2, 3... (no gap, no duplicate; bench/lib/frame-seq.ts, ~0.1 µs a frame); consumer 0
 *                  also reads it with core's bodySeq (the oracle) and indexes each #commit in place
 *                  (indexCommitFrame: repo and rev) for the latency. Light, so that with 100 consumers
 *                  the consumer process takes as little as possible of the cores the relay runs on.
 *   ws             the `ws` library (one 'message' event per frame per consumer); consumer 0 decodes every frame
 *                  (decodeFrame) and checks its seq, the other consumers only count. The instrument of the
 *                  figures before 2026-12-07 (its cost grows to 310-400 µs per event with 100 consumers).
 * Prints `{ ready }` once all are connected, then `{ done, min, max, first, last, bad }` when every consumer
 * has `expect` frames (or after `idleMs` without a frame); per #commit, `did rev` → wall-clock receive time at
 * consumer 0 goes to `recvFile` (JSON).
 *   argv: '{"url":"ws://...","n":1,"expect":10150,"idleMs":20000,"recvFile":"/tmp/x.json","instrument":"raw"}'
 */
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { bodySeq, decodeFrame, indexCommitFrame, matchMessageHeader } from '../../packages/core/src/stream/index.js'
import { frameSeq } from './frame-seq.js'
import { RawWs } from './raw-ws.js'

const require = createRequire(new URL('../../services/relay/package.json', import.meta.url))
const { WebSocket } = require('ws') as typeof import('ws')
const { url, n, expect, idleMs, recvFile, instrument = 'raw' } = JSON.parse(process.argv[2]!) as {
  url: string
  n: number
  expect: number
  idleMs: number
  recvFile: string
  instrument?: 'raw' | 'ws'
}
if (instrument !== 'raw' && instrument !== 'ws') throw new Error(`unknown consumer instrument ${instrument}`)

const wall = () => performance.timeOrigin + performance.now()
const counts = new Array<number>(n).fill(0)
const bad: string[] = []
const recv: Record<string, number> = {}
let first = 0
let last = 0
let open = 0
let complete = 0
let finished = false
const TYPES = ['#commit', '#identity', '#account', '#sync'] as const
const subscribeUrl = `${url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`

const opened = () => {
  if (++open === n) process.stdout.write(JSON.stringify({ ready: true }) + '\n')
}
const closed = (i: number, code: number, reason: string) => {
  if (!finished && counts[i]! < expect) bad.push(`consumer ${i} closed (${code} ${reason}) after ${counts[i]} frames`)
}

/** raw: every consumer checks the seq read in place; consumer 0 records commit receive times */
function onRaw(i: number, data: Uint8Array): void {
  const t = wall()
  if (!first) first = t
  last = t
  const c = ++counts[i]!
  const seq = frameSeq(data)
  if (seq !== c) rawProblem(i, c, seq, data)
  else if (i === 0) {
    // consumer 0: core's reader as the oracle of frameSeq, and the commit's repo and rev for the latency
    const m = matchMessageHeader(data, TYPES)
    if (!m || bodySeq(data, m.bodyStart) !== seq) rawProblem(i, c, seq, data)
    else if (m.t === '#commit') {
      const cf = indexCommitFrame(data, m.bodyStart)
      recv[`${cf.repo} ${cf.rev()}`] = t
    }
  }
  if (c === expect && ++complete === n) done()
}

function rawProblem(i: number, c: number, seq: number, data: Uint8Array): void {
  if (bad.length >= 100) return
  let what: string
  try {
    const f = decodeFrame(data)
    what = f.op === -1 ? `error frame ${f.error} ${f.message ?? ''}` : f.op === 1 ? `seq ${f.body.seq} (read in place: ${seq})` : 'unknown frame'
  } catch (err) {
    what = `undecodable frame: ${(err as Error).message}`
  }
  bad.push(`consumer ${i}: ${what} at position ${c}`)
}

/** ws (the earlier instrument): consumer 0 decodes every frame, the others count */
function onWs(i: number, data: Buffer): void {
  const t = wall()
  if (!first) first = t
  last = t
  const c = ++counts[i]!
  if (i === 0) {
    const f = decodeFrame(data)
    if (f.op !== 1) bad.push(`error frame ${JSON.stringify(f.body)}`)
    else {
      if (f.body.seq !== c) bad.push(`consumer 0: seq ${f.body.seq} at position ${c}`)
      if (f.t === '#commit') recv[`${f.body.repo} ${f.body.rev}`] = t
    }
  }
  if (c === expect && ++complete === n) done()
}

const sockets: { terminate(): void }[] = Array.from({ length: n }, (_, i) => {
  if (instrument === 'raw') {
    return new RawWs({
      url: subscribeUrl,
      onOpen: opened,
      onMessage: (data) => onRaw(i, data),
      onClose: (code, reason) => closed(i, code, reason),
      onError: (err) => bad.push(`consumer ${i}: ${err.message}`),
    })
  }
  const ws = new WebSocket(subscribeUrl, { perMessageDeflate: false })
  ws.on('open', opened)
  ws.on('message', (data: Buffer) => onWs(i, data))
  ws.on('close', (code, reason) => closed(i, code, reason.toString()))
  ws.on('error', (err) => bad.push(`consumer ${i}: ${err.message}`))
  return ws
})

function done() {
  if (finished) return
  finished = true
  const min = Math.min(...counts)
  const max = Math.max(...counts)
  for (const ws of sockets) ws.terminate()
  writeFileSync(recvFile, JSON.stringify(recv))
  process.stdout.write(JSON.stringify({ done: true, min, max, first, last, bad: bad.slice(0, 20) }) + '\n', () => process.exit(0))
}
setInterval(() => {
  if (last && wall() - last > idleMs) done()
}, 200)
