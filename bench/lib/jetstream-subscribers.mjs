// Child process of bench/jetstream.ts: opens N WebSocket subscribers to a Jetstream URL (each with its own
// query), counts messages and bytes, and prints one JSON line once `expect` messages have arrived in total
// (or nothing arrived for `idleMs`). Runs in its own process so that the relay's CPU is measured alone.
// argv: <json {urls: string[], expect: number, idleMs: number}>
import { createRequire } from 'node:module'

const require = createRequire(new URL('../../services/relay/package.json', import.meta.url))
const { WebSocket } = require('ws')
const { urls, expect, idleMs } = JSON.parse(process.argv[2])
let messages = 0
let bytes = 0
let first = 0
let last = 0
let open = 0
let failed = 0
const settled = () => {
  if (open + failed === urls.length) process.stdout.write(JSON.stringify({ ready: true, open, failed }) + '\n')
}
const sockets = urls.map((u) => {
  const ws = new WebSocket(u)
  ws.on('open', () => {
    open++
    settled()
  })
  ws.on('unexpected-response', (_req, res) => {
    process.stderr.write(`subscriber refused: HTTP ${res.statusCode}\n`)
    failed++
    settled()
    if (failed === urls.length) done()
  })
  ws.on('message', (data) => {
    const now = performance.timeOrigin + performance.now()
    if (!first) first = now
    last = now
    messages++
    bytes += data.length
    if (messages >= expect) done()
  })
  ws.on('error', (err) => process.stderr.write(`subscriber error: ${err.message}\n`))
  return ws
})
let finished = false
function done() {
  if (finished) return
  finished = true
  process.stdout.write(JSON.stringify({ messages, bytes, first, last, open, failed }) + '\n')
  for (const ws of sockets) ws.terminate()
  setTimeout(() => process.exit(0), 50)
}
setInterval(() => {
  if (last && performance.timeOrigin + performance.now() - last > idleMs) done()
}, 100)
