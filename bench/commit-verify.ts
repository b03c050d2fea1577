/**
 * sync-1.1 `#commit` check throughput: core's `verifyCommitEvent` (CAR parse, commit decode, signature
 * via the libsecp256k1 fast path, record blocks, MST inversion against prevData, chain) against the
 * reference @atproto/sync path a Firehose consumer runs (`parseCommitAuthenticated`: @atproto/repo
 * `verifyProofs` = CAR parse + @atproto/crypto signature + an MST proof per op claim, then the records are
 * decoded), measured in the same run on the same events.
 *
 *   node --import tsx bench/commit-verify.ts [--seconds 1.5] [--events 300]
 *
 * Events: real signed commits on a repo of 1,000 records — half single-create commits, half 5-op commits
 * (3 creates, an update, a delete) — encoded in frames and decoded again, as a consumer receives them.
 * Prints a table and rewrites the "commit-verify" section of bench/RESULTS.md.
 */
import { cpus } from 'node:os'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import { clearVerifyCache } from '../packages/core/src/crypto/index.js'
import { verifyCommitEvent, type CommitEvent } from '../packages/core/src/repo/index.js'
import { BenchAccount, overTheWire } from './lib/fixtures.js'
import { writeResultsSection } from './results.js'

// bench/ has no dependencies of its own: load the reference from @stratos/core's (dev) dependencies
const coreRequire = createRequire(new URL('../packages/core/package.json', import.meta.url))
const atsync = (await import(pathToFileURL(coreRequire.resolve('@atproto/sync')).href)) as {
  parseCommitAuthenticated(
    idResolver: unknown,
    evt: unknown,
    matchCollection?: ((col: string) => boolean) | null,
    forceKeyRefresh?: boolean,
  ): Promise<unknown[]>
}

const arg = (name: string, dflt: number) => {
  const i = process.argv.indexOf(`--${name}`)
  return i > 0 ? Number(process.argv[i + 1]) : dflt
}
const SECONDS = arg('seconds', 1.5)
const EVENTS = arg('events', 300)
const RECORDS = 1000

interface Sample {
  evt: CommitEvent
  key: string
}

/** Runs `fn` over the samples round-robin for SECONDS (after one warm-up pass); returns events/s. */
async function measure(set: Sample[], fn: (s: Sample) => Promise<boolean>): Promise<number> {
  for (const s of set) if (!(await fn(s))) throw new Error('a benchmark event failed verification')
  const budget = SECONDS * 1e9
  const start = process.hrtime.bigint()
  let n = 0
  let elapsed = 0n
  for (;;) {
    for (const s of set) {
      if (!(await fn(s))) throw new Error('verification failed during the benchmark')
    }
    n += set.length
    elapsed = process.hrtime.bigint() - start
    if (Number(elapsed) >= budget) break
  }
  return n / (Number(elapsed) / 1e9)
}

async function build(): Promise<{ single: Sample[]; five: Sample[]; sliceBytes: { single: number; five: number } }> {
  const account = await BenchAccount.create(RECORDS)
  const key = account.keypair.did()
  const single: Sample[] = []
  const five: Sample[] = []
  let seq = 0
  for (let i = 0; i < EVENTS; i++) {
    const evt = i % 2 === 0 ? await account.createOne() : await account.fiveOps()
    ;(i % 2 === 0 ? single : five).push({ evt: overTheWire(evt, ++seq), key })
  }
  const avg = (s: Sample[]) => Math.round(s.reduce((a, x) => a + x.evt.blocks.byteLength, 0) / s.length)
  return { single, five, sliceBytes: { single: avg(single), five: avg(five) } }
}

// every event is checked against the state it chains to, as a relay holding the repo would
const stratosWith = (mstInversion: 'fast' | 'oracle') => async (s: Sample) => {
  const res = await verifyCommitEvent(s.evt, {
    signingKey: s.key,
    prev: { rev: s.evt.since!, data: s.evt.prevData! },
    mstInversion,
  })
  return res.ok
}
const stratos = stratosWith('fast')

// the identity lookup is an in-memory map, so only the verification is measured
function referenceResolver(set: Sample[]) {
  const keys = new Map(set.map((s) => [s.evt.repo, s.key]))
  return { did: { resolveAtprotoKey: async (did: string) => keys.get(did)! } }
}
const reference = (set: Sample[]) => {
  const resolver = referenceResolver(set)
  return async (s: Sample) => {
    const out = await atsync.parseCommitAuthenticated(resolver, s.evt)
    return out.length === s.evt.ops.length
  }
}

interface Row {
  kind: string
  impl: string
  perSec: number
  ratio: number
}

async function main() {
  const t0 = Date.now()
  const { single, five, sliceBytes } = await build()
  const buildSec = (Date.now() - t0) / 1000
  const rows: Row[] = []
  for (const [kind, set] of [
    ['1 op', single],
    ['5 ops', five],
  ] as const) {
    const ref = await measure(set, reference(set))
    const add = (impl: string, perSec: number) => rows.push({ kind, impl, perSec, ratio: perSec / ref })
    add('@atproto/sync parseCommitAuthenticated (reference)', ref)
    clearVerifyCache()
    add(
      'stratos verifyCommitEvent, inversion with @atproto/repo MST (former path, key cache warm)',
      await measure(set, stratosWith('oracle')),
    )
    add('stratos verifyCommitEvent (key cache warm)', await measure(set, stratos))
    add(
      'stratos verifyCommitEvent (key cache cold)',
      await measure(set, (s) => {
        clearVerifyCache()
        return stratos(s)
      }),
    )
  }

  const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
  console.log(
    `\ncommit-verify: ${EVENTS} commits on a ${RECORDS}-record repo (built in ${buildSec.toFixed(1)}s), ${SECONDS}s per row\n`,
  )
  const w = Math.max(...rows.map((r) => r.impl.length))
  for (const r of rows) {
    console.log(`${r.kind.padEnd(5)}  ${r.impl.padEnd(w)}  ${fmt(r.perSec).padStart(7)} events/s  ${r.ratio.toFixed(2)}x`)
  }

  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  writeResultsSection(
    'commit-verify',
    [
      '## commit-verify: sync-1.1 `#commit` verification',
      '',
      `\`node --import tsx bench/commit-verify.ts\` — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
        `${cpu} (${cpus().length} cores, shared). ${EVENTS} real signed commits (k256) on a repo of ${RECORDS} records: ` +
        `${single.length} single-create commits (CAR slice ~${fmt(sliceBytes.single)} bytes) and ${five.length} 5-op commits ` +
        `(3 creates, an update, a delete; ~${fmt(sliceBytes.five)} bytes), frame-decoded as a consumer gets them. ` +
        `${SECONDS}s per row, one event at a time, one thread.`,
      '',
      '- stratos: core `verifyCommitEvent` — shape and limits, CAR, commit, signature (libsecp256k1), record blocks, ' +
        'MST inversion of every op against `prevData`, chain (`since`/`prevData` against the stored state). ' +
        'The MST inversion is core\'s `invertMstOps` (on the decoded slice nodes, re-encoding only changed nodes); ' +
        'the "former path" row runs the same check with the inversion through @atproto/repo\'s MST ' +
        '(`mstInversion: \'oracle\'`). "cold" clears the parsed-key cache before each event (a relay seeing each account rarely).',
      '- reference: @atproto/sync `parseCommitAuthenticated`, the check its `Firehose` runs per `#commit` ' +
        '(@atproto/repo `verifyProofs`: CAR, signature with @atproto/crypto, an MST inclusion/exclusion proof per op; ' +
        'then the records are decoded), with the signing key from an in-memory map. It does no inversion against ' +
        '`prevData`, so it checks less than stratos does.',
      '',
      '| commit | implementation | events/s | vs reference |',
      '|---|---|---:|---:|',
      ...rows.map((r) => `| ${r.kind} | ${r.impl} | ${fmt(r.perSec)} | ${r.ratio.toFixed(2)}x |`),
    ].join('\n'),
  )
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
