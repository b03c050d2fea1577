/**
 * Replays every did:plc audit-log interop vector through the pure validation, with the timestamps the log
 * carries: valid logs are accepted op by op and reproduce the file's nullified flags, invalid logs are refused
 * at their last operation (every earlier operation being accepted).
 */
import { readFileSync, readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { replayAuditLog, type PlcErrorCode } from '../src/validate.js'

const base = fileURLToPath(new URL('./vectors/did-plc/interop_tests/audit_log/', import.meta.url))

interface VectorEntry {
  did: string
  operation: unknown
  cid: string
  nullified: boolean
  createdAt: string
}

function load(kind: 'valid' | 'invalid'): [string, VectorEntry[]][] {
  return readdirSync(base + kind)
    .filter((f) => f.endsWith('.json'))
    .sort()
    .map((f) => [f, JSON.parse(readFileSync(`${base}${kind}/${f}`, 'utf8')) as VectorEntry[]])
}

/** What each invalid log gets wrong, from its name. */
const EXPECTED: Record<string, { code: PlcErrorCode; message?: RegExp }> = {
  'log_invalid_nullification_reused_key.json': { code: 'insufficient-authority' },
  'log_invalid_nullification_too_slow.json': { code: 'late-recovery', message: /72 hours/ },
  'log_invalid_sig_b64_newline.json': { code: 'bad-signature-encoding', message: /newline/ },
  'log_invalid_sig_b64_padding_bits.json': { code: 'bad-signature-encoding', message: /padding bits/ },
  'log_invalid_sig_b64_padding_chars.json': { code: 'bad-signature-encoding', message: /padding/ },
  'log_invalid_sig_der.json': { code: 'bad-signature', message: /DER/ },
  'log_invalid_sig_k256_high_s.json': { code: 'bad-signature', message: /high-S/ },
  'log_invalid_sig_p256_high_s.json': { code: 'bad-signature', message: /high-S/ },
  'log_invalid_update_nullified.json': { code: 'prev-nullified' },
  'log_invalid_update_tombstoned.json': { code: 'tombstoned' },
}

const valid = load('valid')
const invalid = load('invalid')
const tally = { valid: 0, invalid: 0 }

describe('did:plc audit-log vectors', () => {
  it('has the vector files', () => {
    expect(valid.length).toBe(10)
    expect(invalid.length).toBe(10)
  })

  describe('valid logs', () => {
    for (const [file, entries] of valid) {
      it(`accepts ${file} op by op`, () => {
        const did = entries[0]!.did
        const res = replayAuditLog(did, entries)
        if (!res.ok) {
          throw new Error(`${file}: op ${res.index} refused (${res.code}): ${res.message}`)
        }
        expect(res.log.map((e) => e.cid)).toEqual(entries.map((e) => e.cid))
        expect(res.log.map((e) => e.nullified)).toEqual(entries.map((e) => e.nullified))
        tally.valid++
        console.log(`vectors ${file} ok (${entries.length} ops, ${entries.filter((e) => e.nullified).length} nullified)`)
      })
    }
  })

  describe('invalid logs', () => {
    for (const [file, entries] of invalid) {
      it(`refuses ${file} at its last op`, () => {
        const did = entries[0]!.did
        const res = replayAuditLog(did, entries)
        expect(res.ok).toBe(false)
        if (res.ok) return
        expect(res.index, `${file} refused at op ${res.index}: ${res.message}`).toBe(entries.length - 1)
        const expected = EXPECTED[file]
        expect(expected, `no expectation for ${file}`).toBeDefined()
        expect(res.code, res.message).toBe(expected!.code)
        if (expected!.message) expect(res.message).toMatch(expected!.message)
        // every earlier op was accepted: the prefix replays cleanly
        expect(replayAuditLog(did, entries.slice(0, -1)).ok).toBe(true)
        tally.invalid++
        console.log(`vectors ${file} ok (refused op ${res.index}, ${res.code}: ${res.message})`)
      })
    }
  })

  afterAll(() => {
    console.log(`valid ${tally.valid}/${valid.length}, invalid ${tally.invalid}/${invalid.length}`)
  })
})
