/**
 * Child process of bench/relay.ts: N raw WebSocket consumers of a relay's subscribeRepos. Every consumer
 * counts frames and checks its seqs are 1, 2, 3... (no gap, no duplicate: read from the frame header's
 * body without a full decode for all but the first); consumer 0 decodes every frame and records, per
 * #commit, `did rev` → wall-clock receive time (for latency). Prints `{ ready }` once all are connected,
 * then `{ done, perConsumer, first, last, bad, recv }` when every consumer has `expect` frames (or after
 * `idleMs` without a frame); the receive times go to `recvFile` (JSON).
 *   argv: '{"url":"ws://...","n":1,"expect":10150,"idleMs":20000,"recvFile":"/tmp/x.json"}'
 */
import { writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { decodeFrame } from '../../packages/core/src/stream/index.js'

const require = createRequire(new URL('../../services/relay/package.json', import.meta.url))
const { WebSocket } = require('ws') as typeof import('ws')
const { url, n, expect, idleMs, recvFile } = JSON.parse(process.argv[2]!) as { url: string; n: number; expect: number; idleMs: number; recvFile: string }

const wall = () => performance.timeOrigin + performance.now()
const counts = new Array<number>(n).fill(0)
const bad: string[] = []
const recv: Record<string, number> = {}
let first = 0
let last = 0
let open = 0
let complete = 0
let finished = false

const sockets = Array.from({ length: n }, (_, i) => {
  const ws = new WebSocket(`${url.replace(/^http/, 'ws')}/xrpc/com.atproto.sync.subscribeRepos`, { perMessageDeflate: false })
  ws.on('open', () => {
    if (++open === n) process.stdout.write(JSON.stringify({ ready: true }) + '\n')
  })
  ws.on('message', (data: Buffer) => {
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
  })
  ws.on('close', (code, reason) => {
    if (!finished && counts[i]! < expect) bad.push(`consumer ${i} closed (${code} ${reason}) after ${counts[i]} frames`)
  })
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
