/**
 * Signature verification throughput: the Stratos fast path (libsecp256k1 for k256, node:crypto/OpenSSL
 * for p256) against @atproto/crypto (the reference, pure-JS noble curves), measured in the same run.
 *
 *   node --import tsx bench/crypto-verify.ts [--seconds 1.5]
 *
 * Prints a table and rewrites the "crypto-verify" section of bench/RESULTS.md.
 */
import { randomBytes, verify as nodeVerify } from 'node:crypto'
import { cpus } from 'node:os'
import { createRequire } from 'node:module'
import { pathToFileURL } from 'node:url'
import {
  clearVerifyCache,
  generateKeypair,
  k256Backend,
  parseDidKey,
  verifySignature,
  type Curve,
} from '../packages/core/src/crypto/index.js'
import { isLowS, publicKeyObject } from '../packages/core/src/crypto/verify.js'
import { writeResultsSection } from './results.js'

// bench/ has no dependencies of its own: load the reference library from @stratos/core's dependencies
const coreRequire = createRequire(new URL('../packages/core/package.json', import.meta.url))
const atcrypto = (await import(pathToFileURL(coreRequire.resolve('@atproto/crypto')).href)) as {
  verifySignature(didKey: string, data: Uint8Array, sig: Uint8Array): Promise<boolean>
}

const secondsArg = process.argv.indexOf('--seconds')
const SECONDS = secondsArg > 0 ? Number(process.argv[secondsArg + 1]) : 1.5
const KEYS = 64

interface Sample {
  did: string
  msg: Uint8Array
  sig: Uint8Array
}

async function samples(curve: Curve): Promise<Sample[]> {
  const out: Sample[] = []
  for (let i = 0; i < KEYS; i++) {
    const kp = await generateKeypair(curve)
    // a typical signed payload: a repo commit is ~150 bytes of DAG-CBOR
    const msg = randomBytes(150)
    out.push({ did: kp.did(), msg, sig: await kp.sign(msg) })
  }
  return out
}

/** Runs `fn` round-robin over the samples for SECONDS; returns operations per second. */
async function measure(set: Sample[], fn: (s: Sample) => boolean | Promise<boolean>): Promise<number> {
  // warm-up
  for (const s of set) if (!(await fn(s))) throw new Error('benchmark sample failed to verify')
  const budget = SECONDS * 1e9
  const start = process.hrtime.bigint()
  let ops = 0
  let elapsed = 0n
  for (;;) {
    for (let i = 0; i < set.length; i++) {
      const r = fn(set[i]!)
      if (r !== true && (r === false || !(await r))) throw new Error('verification failed during benchmark')
    }
    ops += set.length
    elapsed = process.hrtime.bigint() - start
    if (Number(elapsed) >= budget) break
  }
  return ops / (Number(elapsed) / 1e9)
}

interface Row {
  curve: Curve
  impl: string
  opsPerSec: number
  ratio: number
}

async function main() {
  const rows: Row[] = []
  for (const curve of ['k256', 'p256'] as const) {
    const set = await samples(curve)
    const reference = await measure(set, (s) => atcrypto.verifySignature(s.did, s.msg, s.sig))
    const add = (impl: string, opsPerSec: number) => rows.push({ curve, impl, opsPerSec, ratio: opsPerSec / reference })
    add('@atproto/crypto verifySignature (reference)', reference)
    clearVerifyCache()
    add(
      `stratos verifySignature (${curve === 'k256' ? k256Backend : 'node:crypto'}, cached key)`,
      await measure(set, (s) => verifySignature(s.did, s.msg, s.sig)),
    )
    add(
      `stratos verifySignature (${curve === 'k256' ? k256Backend : 'node:crypto'}, cold key cache)`,
      await measure(set, (s) => {
        clearVerifyCache()
        return verifySignature(s.did, s.msg, s.sig)
      }),
    )
    if (curve === 'k256') {
      // the fallback used when the native binding is unavailable
      const keys = new Map(set.map((s) => [s.did, publicKeyObject('k256', parseDidKey(s.did).publicKey)]))
      add(
        'node:crypto k256 (fallback path, cached key)',
        await measure(
          set,
          (s) =>
            isLowS('k256', s.sig) &&
            nodeVerify('sha256', s.msg, { key: keys.get(s.did)!, dsaEncoding: 'ieee-p1363' }, s.sig),
        ),
      )
    }
  }

  const fmt = (n: number) => Math.round(n).toLocaleString('en-US')
  console.log(`\ncrypto-verify: ${SECONDS}s per row, ${KEYS} keys, 150-byte messages\n`)
  const w = Math.max(...rows.map((r) => r.impl.length))
  for (const r of rows) {
    console.log(`${r.curve}  ${r.impl.padEnd(w)}  ${fmt(r.opsPerSec).padStart(9)} verify/s  ${r.ratio.toFixed(2)}x`)
  }

  const table = [
    '| curve | implementation | verifications/s | vs @atproto/crypto |',
    '|---|---|---:|---:|',
    ...rows.map((r) => `| ${r.curve} | ${r.impl} | ${fmt(r.opsPerSec)} | ${r.ratio.toFixed(2)}x |`),
  ].join('\n')
  const cpu = cpus()[0]?.model ?? 'unknown cpu'
  writeResultsSection(
    'crypto-verify',
    [
      '## crypto-verify: ECDSA signature verification',
      '',
      `\`node --import tsx bench/crypto-verify.ts\` — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ` +
        `${cpu} (${cpus().length} cores, shared). ${SECONDS}s per row, ${KEYS} keys round-robin, 150-byte messages, ` +
        'one thread. Ratios are against @atproto/crypto measured in the same run.',
      '',
      table,
    ].join('\n'),
  )
}

main().catch((err) => {
  console.error(err)
  process.exit(1)
})
