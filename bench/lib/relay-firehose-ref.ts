/**
 * Child process of bench/relay.ts: the comparison. @atproto/sync's Firehose (verifying: signatures and MST
 * proofs of every #commit, keys resolved through @atproto/identity from the upstream's PLC endpoint) reads
 * the same upstream frames; prints `{ commits, events, first, last, cpuUs, errors }` once `expect` #commit
 * events have been handled (or after `idleMs` without one).
 *   argv: '{"upstream":"http://127.0.0.1:port","expect":2050,"idleMs":20000}'
 */
import { IdResolver } from '@atproto/identity'
import { Firehose } from '@atproto/sync'

const { upstream, expect, idleMs } = JSON.parse(process.argv[2]!) as { upstream: string; expect: number; idleMs: number }
const wall = () => performance.timeOrigin + performance.now()
let commits = 0
let events = 0
let first = 0
let last = 0
const errors: string[] = []
let finished = false
const cpu0 = process.cpuUsage()
const revs = new Set<string>()

const firehose = new Firehose({
  // the default fetch refuses loopback addresses; the bench PLC is on 127.0.0.1
  idResolver: new IdResolver({ plcUrl: upstream, fetch: globalThis.fetch }),
  service: upstream.replace(/^http/, 'ws'),
  getCursor: () => 0,
  handleEvent: async (evt) => {
    const t = wall()
    if (!first) first = t
    last = t
    events++
    if ('commit' in evt && 'rev' in evt) {
      const key = `${evt.did} ${evt.rev}`
      if (!revs.has(key)) {
        revs.add(key)
        commits++
        if (commits === expect) done()
      }
    }
  },
  onError: (err) => {
    if (errors.length < 20) errors.push(err.message)
  },
})
void firehose.start()

function done() {
  if (finished) return
  finished = true
  const cpu = process.cpuUsage(cpu0)
  process.stdout.write(JSON.stringify({ commits, events, first, last, cpuUs: cpu.user + cpu.system, errors }) + '\n')
  setTimeout(() => process.exit(0), 50)
}
setInterval(() => {
  if (last && wall() - last > idleMs) done()
}, 200)
