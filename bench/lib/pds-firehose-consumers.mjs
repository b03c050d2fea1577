// Child process of bench/pds.ts: N WebSocket consumers of one PDS's com.atproto.sync.subscribeRepos (live, no
// cursor). Each records when every frame arrives (ms since the epoch, sub-ms). Runs in its own process so the
// consumers' CPU is neither the PDS's nor the load generator's.
// argv: <json {url, consumers}>. stdin "stop\n" ends it; it then prints one JSON line:
// {counts: number[], median: number[], max: number[]}: per frame index, the median and latest arrival.
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'

const require = createRequire(new URL('../../services/pds/package.json', import.meta.url))
const { WebSocket } = require('ws')
const { url, consumers } = JSON.parse(process.argv[2])
const arrivals = []
let open = 0
const settled = () => {
  open++
  if (open === consumers) process.stdout.write(JSON.stringify({ ready: true }) + '\n')
}
const sockets = []
for (let i = 0; i < consumers; i++) {
  const times = []
  arrivals.push(times)
  const ws = new WebSocket(url, { perMessageDeflate: false })
  ws.on('open', settled)
  ws.on('message', () => times.push(performance.timeOrigin + performance.now()))
  ws.on('error', (err) => {
    process.stderr.write(`consumer error: ${err.message}\n`)
    settled()
  })
  sockets.push(ws)
}
createInterface({ input: process.stdin }).on('line', (line) => {
  if (line.trim() !== 'stop') return
  const n = Math.max(0, ...arrivals.map((a) => a.length))
  const median = []
  const max = []
  for (let k = 0; k < n; k++) {
    const at = arrivals.map((a) => a[k]).filter((t) => t !== undefined).sort((a, b) => a - b)
    median.push(at[Math.floor(at.length / 2)])
    max.push(at.length < consumers ? Infinity : at[at.length - 1])
  }
  process.stdout.write(JSON.stringify({ counts: arrivals.map((a) => a.length), median, max }) + '\n')
  for (const ws of sockets) ws.terminate()
  setTimeout(() => process.exit(0), 50)
})
