import { randomBytes } from 'node:crypto'
import * as atcrypto from '@atproto/crypto'
import { afterAll, describe, expect, it, vi } from 'vitest'
import { readInteropJson, reportVectors } from '../util/vectors.js'

// Without the native libsecp256k1 binding, k256 goes through node:crypto with an explicit low-S check.
describe('crypto: k256 without the native binding', () => {
  afterAll(() => {
    delete process.env.STRATOS_DISABLE_NATIVE_SECP256K1
    vi.resetModules()
  })

  it('verifies through node:crypto and still agrees with @atproto/crypto', async () => {
    process.env.STRATOS_DISABLE_NATIVE_SECP256K1 = '1'
    vi.resetModules()
    const c = await import('../../src/crypto/index.js')
    expect(c.k256Backend).toBe('node:crypto')

    const fixtures = readInteropJson<
      { messageBase64: string; publicKeyDid: string; signatureBase64: string; validSignature: boolean }[]
    >('crypto/signature-fixtures.json')
    let passed = 0
    for (const f of fixtures) {
      const ok = c.verifySignature(
        f.publicKeyDid,
        Buffer.from(f.messageBase64, 'base64'),
        Buffer.from(f.signatureBase64, 'base64'),
      )
      expect(ok).toBe(f.validSignature)
      if (ok === f.validSignature) passed++
    }
    reportVectors('signature-fixtures.json (node:crypto k256)', passed, fixtures.length)

    const n = 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
    for (let i = 0; i < 50; i++) {
      const kp = await c.generateKeypair('k256') // signs through @atproto/crypto here
      const ref = await atcrypto.Secp256k1Keypair.import(kp.export())
      const msg = randomBytes(20)
      const sig = await kp.sign(msg)
      expect(Buffer.from(sig).equals(Buffer.from(await ref.sign(msg)))).toBe(true)
      expect(c.verifySignature(kp.did(), msg, sig)).toBe(true)
      const high = Uint8Array.from(sig)
      const s = BigInt('0x' + Buffer.from(sig.subarray(32)).toString('hex'))
      high.set(Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex'), 32)
      expect(c.verifySignature(kp.did(), msg, high)).toBe(false)
      expect(await atcrypto.verifySignature(kp.did(), msg, high)).toBe(false)
    }
  })
})
