import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import * as plcLib from '@did-plc/lib'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { cborEncode } from '@stratos/core/data'
import { beforeAll, describe, expect, it } from 'vitest'
import { formatDidDocument } from '../src/document.js'
import type { AnyPlcOp, LogEntry, PlcOperation, UnsignedPlcOperation } from '../src/types.js'
import {
  MAX_OP_BYTES,
  RECOVERY_WINDOW_MS,
  decodeSignature,
  didForGenesisOp,
  opCid,
  opToData,
  replayAuditLog,
  validateNextOp,
  type OpValidation,
} from '../src/validate.js'

const vectorDir = fileURLToPath(new URL('./vectors/did-plc/interop_tests/audit_log/', import.meta.url))
const readVector = (rel: string) =>
  JSON.parse(readFileSync(vectorDir + rel, 'utf8')) as { did: string; operation: AnyPlcOp; cid: string; createdAt: string }[]

async function sign<T extends object>(unsigned: T, key: SigningKeypair): Promise<T & { sig: string }> {
  const sig = await key.sign(cborEncode(unsigned))
  return { ...unsigned, sig: Buffer.from(sig).toString('base64url') }
}

function unsignedOp(rotationKeys: string[], prev: string | null, extra: Partial<UnsignedPlcOperation> = {}): UnsignedPlcOperation {
  return {
    type: 'plc_operation',
    rotationKeys,
    verificationMethods: { atproto: rotationKeys[0] ?? 'did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ' },
    alsoKnownAs: ['at://alice.test'],
    services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://pds.example.com' } },
    prev,
    ...extra,
  }
}

function expectOk(res: OpValidation) {
  if (!res.ok) throw new Error(`expected acceptance, got ${res.code}: ${res.message}`)
  return res
}

function expectRefused(res: OpValidation, code: string, message?: RegExp) {
  if (res.ok) throw new Error(`expected refusal (${code}), but the operation was accepted`)
  expect(res.code, res.message).toBe(code)
  if (message) expect(res.message).toMatch(message)
}

/** Applies an accepted result to an in-memory log, like the store does. */
function commit(log: LogEntry[], res: OpValidation, at: Date) {
  const ok = expectOk(res)
  for (const e of log) if (ok.nullified.includes(e.cid)) e.nullified = true
  log.push({ cid: ok.cid, operation: ok.operation, nullified: false, createdAt: at })
  return ok
}

let k0: SigningKeypair, k1: SigningKeypair, k2: SigningKeypair, other: SigningKeypair, p256: SigningKeypair
const T0 = Date.parse('2025-01-01T00:00:00.000Z')
const at = (ms: number) => new Date(T0 + ms)

beforeAll(async () => {
  ;[k0, k1, k2, other] = await Promise.all([generateKeypair(), generateKeypair(), generateKeypair(), generateKeypair()])
  p256 = await generateKeypair('p256')
})

async function genesis(keys: SigningKeypair[], signer = keys[0]!) {
  const op = await sign(unsignedOp(keys.map((k) => k.did()), null), signer)
  const did = didForGenesisOp(op)
  const log: LogEntry[] = []
  commit(log, validateNextOp(did, log, op, at(0)), at(0))
  return { did, log, op }
}

describe('genesis', () => {
  it('derives the DID and CID exactly as the reference library does', async () => {
    const { op, did } = await plcLib.createOp({
      signingKey: k1.did(),
      handle: 'alice.test',
      pds: 'https://pds.example.com',
      rotationKeys: [k0.did(), p256.did()],
      signer: p256,
    })
    expect(didForGenesisOp(op)).toBe(did)
    expect(did).toMatch(/^did:plc:[a-z2-7]{24}$/)
    const { cid } = await plcLib.getLastOpWithCid([op])
    expect(opCid(op)).toBe(cid.toString())
    const res = expectOk(validateNextOp(did, [], op, at(0)))
    expect(res.cid).toBe(cid.toString())
    expect(res.signer).toBe(p256.did())
    expect(res.signerIndex).toBe(1)
    expect(res.data?.alsoKnownAs).toEqual(['at://alice.test'])
  })

  it('refuses a genesis operation posted under another DID', async () => {
    const op = await sign(unsignedOp([k0.did()], null), k0)
    const otherDid = didForGenesisOp(await sign(unsignedOp([k1.did()], null), k1))
    expectRefused(validateNextOp(otherDid, [], op, at(0)), 'genesis-mismatch', /does not match the hash/)
  })

  it('refuses a genesis signed by a key that is not one of its rotation keys', async () => {
    const op = await sign(unsignedOp([k0.did()], null), other)
    expectRefused(validateNextOp(didForGenesisOp(op), [], op, at(0)), 'bad-signature', /does not verify/)
  })

  it('refuses an update for an unknown DID and a second genesis for a known one', async () => {
    const { did, log, op } = await genesis([k0])
    const update = await sign(unsignedOp([k0.did()], opCid(op)), k0)
    expectRefused(validateNextOp('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', [], update, at(1)), 'did-not-found')
    expectRefused(validateNextOp(did, log, op, at(1)), 'duplicate', /already in the log/)
  })
})

describe('constraints on new operations (and their absence on replay)', () => {
  const cases: [string, (keys: string[]) => Partial<UnsignedPlcOperation>, RegExp][] = [
    ['no rotation keys', () => ({ rotationKeys: [] }), /1 to 5 keys \(got 0\)/],
    ['six rotation keys', (k) => ({ rotationKeys: [...k, ...k, ...k].slice(0, 6) }), /got 6/],
    ['a duplicate rotation key', (k) => ({ rotationKeys: [k[0]!, k[1]!, k[0]!] }), /duplicate/],
    [
      'an ed25519 rotation key',
      (k) => ({ rotationKeys: [k[0]!, 'did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK'] }),
      /not a p256 or k256/,
    ],
    [
      'eleven verification methods',
      (k) => ({ verificationMethods: Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`m${i}`, k[0]!])) }),
      /too many verificationMethods/,
    ],
    ['a verification method that is not a did:key', () => ({ verificationMethods: { atproto: 'zQ3sh-not-a-key' } }), /did:key/],
  ]
  for (const [name, change, message] of cases) {
    it(`refuses ${name} in a new operation, accepts it when replaying`, async () => {
      const keys = [k0.did(), k1.did(), k2.did()]
      const { did, log, op } = await genesis([k0, k1, k2])
      const update = await sign({ ...unsignedOp(keys, opCid(op)), ...change(keys) }, k1)
      expectRefused(validateNextOp(did, log, update, at(1000)), 'constraint', message)
      expectOk(validateNextOp(did, log, update, at(1000), { mode: 'replay' }))
    })
  }

  it('refuses a legacy create as a new operation but replays one', () => {
    const [first] = readVector('valid/log_legacy_dholms.json')
    expectRefused(validateNextOp(first!.did, [], first!.operation, new Date(first!.createdAt)), 'constraint', /legacy/)
    const res = expectOk(validateNextOp(first!.did, [], first!.operation, new Date(first!.createdAt), { mode: 'replay' }))
    expect(res.cid).toBe(first!.cid)
  })

  it(`refuses an operation over ${MAX_OP_BYTES} bytes of DAG-CBOR`, async () => {
    const { did, log, op } = await genesis([k0])
    const big = await sign(
      unsignedOp([k0.did()], opCid(op), {
        services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: `https://${'a'.repeat(7600)}.com` } },
      }),
      k0,
    )
    expectRefused(validateNextOp(did, log, big, at(1000)), 'too-large', /7500/)
    expectRefused(validateNextOp(did, log, big, at(1000), { mode: 'replay' }), 'too-large')
  })

  it('refuses malformed operations with the field named', async () => {
    const { did, log, op } = await genesis([k0])
    const good = await sign(unsignedOp([k0.did()], opCid(op)), k0)
    expectRefused(validateNextOp(did, log, { ...good, extra: 1 }, at(1000)), 'malformed', /unexpected field "extra"/)
    const { prev: _prev, ...noPrev } = good
    expectRefused(validateNextOp(did, log, noPrev, at(1000)), 'malformed', /missing the "prev" field/)
    expectRefused(validateNextOp(did, log, { ...good, prev: 'not-a-cid' }, at(1000)), 'malformed', /prev/)
    expectRefused(validateNextOp(did, log, { ...good, rotationKeys: 'x' }, at(1000)), 'malformed', /rotationKeys/)
    expectRefused(validateNextOp(did, log, 'hello', at(1000)), 'malformed', /JSON object/)
  })
})

describe('signatures', () => {
  it('accepts only strict base64url of 64 bytes', async () => {
    const op = await sign(unsignedOp([k0.did()], null), k0)
    expect(decodeSignature(op.sig)).toHaveLength(64)
    expect(() => decodeSignature(`${op.sig}==`)).toThrow(/padding/)
    expect(() => decodeSignature(`${op.sig.slice(0, 40)}\n${op.sig.slice(40)}`)).toThrow(/newline/)
    expect(() => decodeSignature(`${op.sig.slice(0, -2)}+/`)).toThrow(/alphabet/)
    // the last character carries 2 padding bits: flip them
    const last = op.sig.at(-1)!
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'
    const flipped = op.sig.slice(0, -1) + alphabet[alphabet.indexOf(last) ^ 1]
    expect(() => decodeSignature(flipped)).toThrow(/padding bits/)
    expect(() => decodeSignature(Buffer.alloc(32, 7).toString('base64url'))).toThrow(/64-byte compact.*got 32 bytes/)
  })

  it('refuses a high-S signature even though it verifies mathematically', async () => {
    for (const key of [k0, p256]) {
      const op = await sign(unsignedOp([key.did()], null), key)
      const n =
        key === p256
          ? 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n
          : 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
      const bytes = decodeSignature(op.sig)
      const s = BigInt(`0x${Buffer.from(bytes.subarray(32)).toString('hex')}`)
      const highS = Buffer.concat([bytes.subarray(0, 32), Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex')])
      const mutated = { ...op, sig: highS.toString('base64url') }
      expectRefused(validateNextOp(didForGenesisOp(mutated), [], mutated, at(0)), 'bad-signature', /high-S/)
    }
  })

  it('refuses an update signed by a key that is not a rotation key of prev', async () => {
    const { did, log, op } = await genesis([k0, k1])
    const update = await sign(unsignedOp([other.did()], opCid(op)), other)
    expectRefused(validateNextOp(did, log, update, at(1000)), 'bad-signature', /does not verify/)
  })

  it('uses the recoveryKey and signingKey of a legacy create as rotation keys', () => {
    const [create, update] = readVector('valid/log_legacy_dholms.json')
    const legacy = create!.operation as { recoveryKey: string; signingKey: string }
    const log: LogEntry[] = []
    commit(log, validateNextOp(create!.did, log, create!.operation, new Date(create!.createdAt), { mode: 'replay' }), new Date(create!.createdAt))
    const res = expectOk(validateNextOp(create!.did, log, update!.operation, new Date(update!.createdAt), { mode: 'replay' }))
    expect([legacy.recoveryKey, legacy.signingKey]).toContain(res.signer)
    expect(res.signer).toBe([legacy.recoveryKey, legacy.signingKey][res.signerIndex])
    expect(res.cid).toBe(update!.cid)
  })
})

describe('chain and recovery rules', () => {
  it('requires prev to be an operation in the log, not nullified, not a tombstone', async () => {
    const { did, log, op } = await genesis([k0, k1])
    const stranger = await sign(unsignedOp([k0.did()], null), k2)
    const update = await sign(unsignedOp([k0.did(), k1.did()], opCid(stranger)), k0)
    expectRefused(validateNextOp(did, log, update, at(1000)), 'prev-not-found', /not an operation in the log/)

    const tomb = await sign({ type: 'plc_tombstone' as const, prev: opCid(op) }, k1)
    commit(log, validateNextOp(did, log, tomb, at(1000)), at(1000))
    const afterTomb = await sign(unsignedOp([k0.did()], opCid(tomb)), k0)
    expectRefused(validateNextOp(did, log, afterTomb, at(2000)), 'tombstoned', /tombstoned/)

    // k0 outranks k1 (which signed the tombstone): it may undo the tombstone within 72 h
    const revive = await sign(unsignedOp([k0.did()], opCid(op)), k0)
    const res = commit(log, validateNextOp(did, log, revive, at(3000)), at(3000))
    expect(res.nullified).toEqual([opCid(tomb)])
    // now the tombstone is nullified: nothing may follow it
    const afterNullified = await sign(unsignedOp([k0.did()], opCid(tomb)), k1)
    expectRefused(validateNextOp(did, log, afterNullified, at(4000)), 'prev-nullified')
  })

  it('lets each fork point be rewritten only by ever higher authority', async () => {
    const keys = [k0, k1, k2]
    const dids = keys.map((k) => k.did())
    const { did, log, op } = await genesis(keys)
    const g = opCid(op)
    const a = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://a.test'] }), k2)
    commit(log, validateNextOp(did, log, a, at(1000)), at(1000))
    const a2 = await sign(unsignedOp(dids, opCid(a), { alsoKnownAs: ['at://a2.test'] }), k2)
    commit(log, validateNextOp(did, log, a2, at(2000)), at(2000))

    // same authority as the signer of the first operation to nullify: refused
    const sameKey = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://same.test'] }), k2)
    expectRefused(validateNextOp(did, log, sameKey, at(3000)), 'insufficient-authority', /higher authority/)

    const b = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://b.test'] }), k1)
    const rb = commit(log, validateNextOp(did, log, b, at(3000)), at(3000))
    expect(rb.nullified).toEqual([opCid(a), opCid(a2)])

    // k1 already forked from the genesis: a second k1 fork must not rewrite its own fork
    const b2 = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://b2.test'] }), k1)
    expectRefused(validateNextOp(did, log, b2, at(4000)), 'insufficient-authority')

    const c = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://c.test'] }), k0)
    const rc = commit(log, validateNextOp(did, log, c, at(4000)), at(4000))
    expect(rc.nullified).toEqual([opCid(b)])
    expect(log.map((e) => e.nullified)).toEqual([false, true, true, true, false])

    // nobody outranks k0 at that fork point any more
    const d = await sign(unsignedOp(dids, g, { alsoKnownAs: ['at://d.test'] }), k0)
    expectRefused(validateNextOp(did, log, d, at(5000)), 'insufficient-authority')
  })

  it('allows recovery at exactly 72 hours and refuses it 1 ms later', async () => {
    for (const [delay, accepted] of [
      [RECOVERY_WINDOW_MS, true],
      [RECOVERY_WINDOW_MS + 1, false],
    ] as const) {
      const { did, log, op } = await genesis([k0, k1])
      const dids = [k0.did(), k1.did()]
      const bad = await sign(unsignedOp(dids, opCid(op), { alsoKnownAs: ['at://evil.test'] }), k1)
      commit(log, validateNextOp(did, log, bad, at(1000)), at(1000))
      const fix = await sign(unsignedOp(dids, opCid(op), { alsoKnownAs: ['at://fixed.test'] }), k0)
      const res = validateNextOp(did, log, fix, at(1000 + delay))
      if (accepted) expect(expectOk(res).nullified).toEqual([opCid(bad)])
      else expectRefused(res, 'late-recovery', /72 hours/)
    }
  })

  it('refuses an operation not later than the most recent one', async () => {
    const { did, log, op } = await genesis([k0])
    const update = await sign(unsignedOp([k0.did()], opCid(op)), k0)
    expectRefused(validateNextOp(did, log, update, at(0)), 'timestamp-order')
    expectOk(validateNextOp(did, log, update, at(1)))
  })
})

describe('replay and rendering', () => {
  it('refuses a valid log once a signature in it is altered', () => {
    const entries = readVector('valid/log_bskyapp.json')
    const last = entries.at(-1)!
    const op = last.operation as PlcOperation
    const tampered = [...entries.slice(0, -1), { ...last, operation: { ...op, sig: `${op.sig[0] === 'A' ? 'B' : 'A'}${op.sig.slice(1)}` } }]
    expect(replayAuditLog(last.did, entries).ok).toBe(true)
    const res = replayAuditLog(last.did, tampered)
    expect(res.ok).toBe(false)
    if (!res.ok) expect(res.index).toBe(entries.length - 1)
  })

  it('renders the DID document of a legacy create in the modern form', () => {
    const [first] = readVector('valid/log_legacy_dholms.json')
    const data = opToData(first!.did, first!.operation)!
    expect(data).toEqual({
      did: 'did:plc:yk4dd2qkboz2yv6tpubpc6co',
      rotationKeys: [
        'did:key:zQ3shhCGUqDKjStzuDxPkTxN6ujddP4RkEKJJouJGRRkaLGbg',
        'did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ',
      ],
      verificationMethods: { atproto: 'did:key:zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ' },
      alsoKnownAs: ['at://dan.bsky.social'],
      services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: 'https://bsky.social' } },
    })
    expect(formatDidDocument(data)).toEqual({
      '@context': [
        'https://www.w3.org/ns/did/v1',
        'https://w3id.org/security/multikey/v1',
        'https://w3id.org/security/suites/secp256k1-2019/v1',
      ],
      id: 'did:plc:yk4dd2qkboz2yv6tpubpc6co',
      alsoKnownAs: ['at://dan.bsky.social'],
      verificationMethod: [
        {
          id: 'did:plc:yk4dd2qkboz2yv6tpubpc6co#atproto',
          type: 'Multikey',
          controller: 'did:plc:yk4dd2qkboz2yv6tpubpc6co',
          publicKeyMultibase: 'zQ3shP5TBe1sQfSttXty15FAEHV1DZgcxRZNxvEWnPfLFwLxJ',
        },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://bsky.social' }],
    })
  })

  it('returns null data for a tombstone', () => {
    const entries = readVector('valid/log_tombstone.json')
    expect(opToData(entries[0]!.did, entries.at(-1)!.operation)).toBeNull()
  })
})
