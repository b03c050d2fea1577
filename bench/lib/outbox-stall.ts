/**
 * How long the outbox's group-commit write (the synchronous part on the event loop) takes per batch, with
 * SQLite's automatic WAL checkpoints (inside a COMMIT) and with core's WalCheckpointer (in a worker):
 * `node --import tsx bench/lib/outbox-stall.ts [auto|worker] [events] [checkpointEvery]`. Prints p50/p99/max ms of
 * the write, and the CPU per event of the main thread and of the process's other threads (the checkpoint worker,
 * libuv's pool with the WAL fdatasyncs, V8's helpers).
 */
import './register.js'
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { threadTimes } from './thread-cpu.js'
import { join } from 'node:path'

const { openRelayDb } = await import('../../services/relay/src/db.js')
const { Outbox } = await import('../../services/relay/src/outbox/outbox.js')
const { WalCheckpointer } = await import('@stratos/core/stream')
const mode = process.argv[2] ?? 'worker'
const events = Number(process.argv[3] ?? 20000)
const checkpointEvery = process.argv[4] ? Number(process.argv[4]) : undefined
/** CPU µs of the main thread and of the other threads of this process */
function cpu(): { main: number; other: number } {
  const out = { main: 0, other: 0 }
  for (const t of threadTimes()) {
    if (t.main) out.main += t.us
    else out.other += t.us
  }
  return out
}
const dir = mkdtempSync(join(tmpdir(), 'outbox-stall-'))
const db = openRelayDb(join(dir, 'relay.sqlite'))
const checkpointer = mode === 'worker' ? new WalCheckpointer({ name: 'ckpt' }) : null
await checkpointer?.ready()
const o = new Outbox(db, { replayWindowMs: 3600_000, replayMaxBytes: undefined, maxQueuedBytes: 1 << 20, maxQueuedFrames: 1000, pingIntervalMs: 0, checkpointer: checkpointer ?? undefined, checkpointEvery })
const times: number[] = []
const flush = o.flush.bind(o)
o.flush = () => {
  const t = performance.now()
  flush()
  times.push(performance.now() - t)
}
const blob = new Uint8Array(1800).map((_, i) => i & 0xff)
const PER_TURN = 20
const cpu0 = cpu()
for (let i = 0; i < events; i += PER_TURN) {
  const batch = []
  for (let j = 0; j < PER_TURN; j++) batch.push(o.emit('#identity', `did:plc:stall${String((i + j) % 50).padStart(20, 'a')}`, { did: 'x', blob }))
  await Promise.all(batch)
}
const sched = (o as unknown as { checkpoints: { completed: number; inlineRuns: number } | null }).checkpoints
const over = (ms: number) => times.filter((t) => t > ms).length
await o.close()
const cpu1 = cpu()
await checkpointer?.close()
db.close()
rmSync(dir, { recursive: true, force: true })
const byTime = [...times]
times.sort((a, b) => a - b)
const q = (p: number) => times[Math.min(times.length - 1, Math.floor(p * times.length))]!.toFixed(2)
console.log(`${mode}: ${times.length} batch writes of ${PER_TURN} events (~1.8 KB each): p50 ${q(0.5)} ms, p99 ${q(0.99)} ms, p99.9 ${q(0.999)} ms, max ${times[times.length - 1]!.toFixed(1)} ms, total ${times.reduce((a, b) => a + b, 0).toFixed(0)} ms; writes over 5 / 20 ms: ${over(5)} / ${over(20)}` +
    (sched ? `; checkpoints completed ${sched.completed}, inline ${sched.inlineRuns}` : '') +
    `; CPU µs/event main ${((cpu1.main - cpu0.main) / events).toFixed(1)}, other threads ${((cpu1.other - cpu0.other) / events).toFixed(1)}`)
