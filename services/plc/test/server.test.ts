/**
 * The directory over HTTP on 127.0.0.1:0, driven by the reference client (@did-plc/lib) and read back by the
 * reference resolver (@atproto/identity).
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { P256Keypair, Secp256k1Keypair } from '@atproto/crypto'
import { IdResolver } from '@atproto/identity'
import * as plc from '@did-plc/lib'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { PlcConfig } from '../src/config.js'
import { PlcServer } from '../src/index.js'
import { RECOVERY_WINDOW_MS, opCid } from '../src/validate.js'

type Keypair = Secp256k1Keypair | P256Keypair

let dir: string
let server: PlcServer
let url: string
let client: plc.Client
/** when set, the directory stamps operations with this time instead of the wall clock */
let clock: number | null = null
/** every DID this file creates (to check exports against their audit logs) */
const dids: string[] = []

const config = (): PlcConfig => ({
  port: 0,
  host: '127.0.0.1',
  dbPath: join(dir, 'plc.sqlite'),
  version: 'test-1.2.3',
  logLevel: 'silent',
})

async function startServer() {
  server = await PlcServer.create(config(), { now: () => clock ?? Date.now() })
  url = await server.start()
  client = new plc.Client(url)
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'stratos-plc-'))
  await startServer()
})

afterAll(async () => {
  await server?.close()
  rmSync(dir, { recursive: true, force: true })
})

async function post(did: string, body: unknown, raw = false): Promise<{ status: number; body: any }> {
  const res = await fetch(`${url}/${encodeURIComponent(did)}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? (body as string) : JSON.stringify(body),
  })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // plain text
  }
  return { status: res.status, body: parsed }
}

async function get(path: string): Promise<{ status: number; body: any; type: string | null; text: string }> {
  const res = await fetch(`${url}${path}`)
  const text = await res.text()
  let body: unknown = text
  try {
    body = JSON.parse(text)
  } catch {
    // plain text
  }
  return { status: res.status, body, type: res.headers.get('content-type'), text }
}

async function expectClientError(p: Promise<unknown>, status: number, message: RegExp) {
  try {
    await p
  } catch (err) {
    expect(err).toBeInstanceOf(plc.PlcClientError)
    const e = err as plc.PlcClientError
    expect(e.status).toBe(status)
    expect((e.data as { message: string }).message).toMatch(message)
    return
  }
  throw new Error('expected the directory to refuse the operation')
}

async function createDid(rotationKeys: Keypair[], signer: Keypair, handle = 'someone.test'): Promise<string> {
  const signing = await Secp256k1Keypair.create()
  const did = await client.createDid({
    signingKey: signing.did(),
    handle,
    pds: 'https://pds.example.com',
    rotationKeys: rotationKeys.map((k) => k.did()),
    signer,
  })
  dids.push(did)
  return did
}

function toDer(sig: Uint8Array): Buffer {
  const int = (b: Uint8Array) => {
    let i = 0
    while (i < b.length - 1 && b[i] === 0) i++
    let v = Buffer.from(b.subarray(i))
    if (v[0]! & 0x80) v = Buffer.concat([Buffer.from([0]), v])
    return Buffer.concat([Buffer.from([0x02, v.length]), v])
  }
  const r = int(sig.subarray(0, 32))
  const s = int(sig.subarray(32))
  return Buffer.concat([Buffer.from([0x30, r.length + s.length]), r, s])
}

function withHighS(sigB64: string, curve: 'k256' | 'p256'): string {
  const n =
    curve === 'p256'
      ? 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n
      : 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n
  const bytes = Buffer.from(sigB64, 'base64url')
  const s = BigInt(`0x${bytes.subarray(32).toString('hex')}`)
  return Buffer.concat([bytes.subarray(0, 32), Buffer.from((n - s).toString(16).padStart(64, '0'), 'hex')]).toString('base64url')
}

describe('did:plc directory over HTTP', () => {
  let signing: Secp256k1Keypair
  let recovery: P256Keypair
  let rotation: Secp256k1Keypair
  let newRotation: Secp256k1Keypair
  let did: string

  it('creates a DID with the reference client and serves its document', async () => {
    signing = await Secp256k1Keypair.create()
    recovery = await P256Keypair.create()
    rotation = await Secp256k1Keypair.create()
    did = await client.createDid({
      signingKey: signing.did(),
      handle: 'alice.test',
      pds: 'https://pds.example.com',
      rotationKeys: [recovery.did(), rotation.did()],
      signer: rotation,
    })
    dids.push(did)
    expect(did).toMatch(/^did:plc:[a-z2-7]{24}$/)

    const res = await get(`/${did}`)
    expect(res.status).toBe(200)
    expect(res.type).toMatch(/^application\/did\+ld\+json/)
    expect(res.body).toEqual({
      '@context': [
        'https://www.w3.org/ns/did/v1',
        'https://w3id.org/security/multikey/v1',
        'https://w3id.org/security/suites/secp256k1-2019/v1',
      ],
      id: did,
      alsoKnownAs: ['at://alice.test'],
      verificationMethod: [
        { id: `${did}#atproto`, type: 'Multikey', controller: did, publicKeyMultibase: signing.did().replace('did:key:', '') },
      ],
      service: [{ id: '#atproto_pds', type: 'AtprotoPersonalDataServer', serviceEndpoint: 'https://pds.example.com' }],
    })
    const data = await client.getDocumentData(did)
    expect(data.rotationKeys).toEqual([recovery.did(), rotation.did()])
    expect(data.verificationMethods).toEqual({ atproto: signing.did() })
  })

  it('updates the handle and rotates the rotation keys', async () => {
    await client.updateHandle(did, rotation, 'alice2.test')
    newRotation = await Secp256k1Keypair.create()
    await client.updateRotationKeys(did, rotation, [recovery.did(), newRotation.did()])
    expect((await client.getDocumentData(did)).rotationKeys).toEqual([recovery.did(), newRotation.did()])

    // the old key no longer controls the DID
    await expectClientError(client.updateHandle(did, rotation, 'mallory.test'), 400, /signature does not verify/)
    await client.updatePds(did, newRotation, 'https://pds2.example.com')

    const log = await client.getOperationLog(did)
    expect(log).toHaveLength(4)
    const audit = await client.getAuditableLog(did)
    expect(audit.map((e) => e.nullified)).toEqual([false, false, false, false])
    expect(audit.map((e) => e.cid)).toEqual(log.map((op) => opCid(op as never)))
    const last = await get(`/${did}/log/last`)
    expect(last.body).toEqual(log[3])
  })

  it('resolves through @atproto/identity pointed at this directory', async () => {
    const resolver = new IdResolver({ plcUrl: url })
    const atp = await resolver.did.resolveAtprotoData(did, true)
    expect(atp).toEqual({ did, handle: 'alice2.test', signingKey: signing.did(), pds: 'https://pds2.example.com' })
    expect(await resolver.did.resolve('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', true)).toBeNull()
  })

  it('lets a higher-authority key fork within 72 h, nullifying the later operation', async () => {
    const lastGood = (await client.getLastOp(did)) as plc.Operation
    await client.updateHandle(did, newRotation, 'evil.test') // rotation key #1
    expect((await client.getDocument(did)).alsoKnownAs).toEqual(['at://evil.test'])

    // the same key cannot undo its own operation
    const sameKey = await plc.updateHandleOp(lastGood, newRotation, 'evil2.test')
    const refused = await post(did, sameKey)
    expect(refused.status).toBe(400)
    expect(refused.body.message).toMatch(/higher authority/)

    // rotation key #0 (the recovery key) forks from the last good operation
    const fork = await plc.updateHandleOp(lastGood, recovery, 'alice-recovered.test')
    await client.sendOperation(did, fork)
    expect((await client.getDocument(did)).alsoKnownAs).toEqual(['at://alice-recovered.test'])

    const audit = await client.getAuditableLog(did)
    expect(audit).toHaveLength(6)
    expect(audit.map((e) => e.nullified)).toEqual([false, false, false, false, true, false])
    expect((audit[4]!.operation as plc.Operation).alsoKnownAs).toEqual(['at://evil.test'])
    expect(audit[5]!.cid).toBe(opCid(fork))
    const log = await client.getOperationLog(did)
    expect(log.map((op) => opCid(op as never))).toEqual(audit.filter((e) => !e.nullified).map((e) => e.cid))
  })

  it('keeps the 72-hour window: exactly 72 h is allowed, one millisecond more is refused', async () => {
    const base = Date.now() + 60_000
    try {
      for (const [late, ok] of [
        [0, true],
        [1, false],
      ] as const) {
        clock = base
        const r0 = await P256Keypair.create()
        const r1 = await Secp256k1Keypair.create()
        const d = await createDid([r0, r1], r0)
        const genesis = (await client.getLastOp(d)) as plc.Operation
        clock = base + 1000
        await client.updateHandle(d, r1, 'hijacked.test')
        clock = base + 1000 + RECOVERY_WINDOW_MS + late
        const fork = await plc.updateHandleOp(genesis, r0, 'restored.test')
        const res = await post(d, fork)
        if (ok) {
          expect(res.status).toBe(200)
          const audit = await client.getAuditableLog(d)
          expect(audit.map((e) => e.nullified)).toEqual([false, true, false])
          expect(Date.parse(audit[2]!.createdAt) - Date.parse(audit[1]!.createdAt)).toBe(RECOVERY_WINDOW_MS)
        } else {
          expect(res.status).toBe(400)
          expect(res.body.message).toMatch(/more than 72 hours/)
          expect((await client.getDocument(d)).alsoKnownAs).toEqual(['at://hijacked.test'])
        }
      }
    } finally {
      clock = null
    }
  })

  describe('refuses bad operations with 400 and a message', () => {
    let key: Secp256k1Keypair
    let d: string
    let head: plc.Operation

    beforeAll(async () => {
      key = await Secp256k1Keypair.create()
      d = await createDid([key], key, 'bob.test')
      head = (await client.getLastOp(d)) as plc.Operation
    })

    async function expectRefused(body: unknown, message: RegExp, target = d) {
      const res = await post(target, body)
      expect(res.status).toBe(400)
      expect(Object.keys(res.body)).toEqual(['message'])
      expect(res.body.message).toMatch(message)
      // nothing changed
      expect(await client.getLastOp(d)).toEqual(head)
    }

    it('bad signature', async () => {
      const stranger = await Secp256k1Keypair.create()
      await expectRefused(await plc.updateHandleOp(head, stranger, 'x.test'), /signature does not verify/)
    })

    it('high-S signature', async () => {
      const op = await plc.updateHandleOp(head, key, 'x.test')
      await expectRefused({ ...op, sig: withHighS(op.sig, 'k256') }, /high-S/)
    })

    it('DER signature', async () => {
      const op = await plc.updateHandleOp(head, key, 'x.test')
      const der = toDer(Buffer.from(op.sig, 'base64url')).toString('base64url')
      await expectRefused({ ...op, sig: der }, /DER/)
    })

    it('non-canonical base64url signature', async () => {
      const op = await plc.updateHandleOp(head, key, 'x.test')
      await expectRefused({ ...op, sig: `${op.sig}==` }, /padding/)
    })

    it('prev that is not in the log', async () => {
      const otherKey = await Secp256k1Keypair.create()
      const other = await plc.createOp({ signingKey: otherKey.did(), handle: 'o.test', pds: 'https://o.example.com', rotationKeys: [otherKey.did()], signer: otherKey })
      const op = await plc.updateHandleOp(other.op, key, 'x.test')
      await expectRefused(op, /prev .* is not an operation in the log/)
    })

    it('operation too large', async () => {
      const op = await plc.updatePdsOp(head, key, `https://${'a'.repeat(8000)}.example.com`)
      await expectRefused(op, /over the 7500-byte limit/)
    })

    it('too many rotation keys', async () => {
      const keys = await Promise.all(Array.from({ length: 6 }, () => Secp256k1Keypair.create()))
      const op = await plc.updateRotationKeysOp(head, key, keys.map((k) => k.did()))
      await expectRefused(op, /1 to 5 keys/)
    })

    it('malformed operation and malformed JSON', async () => {
      const op = await plc.updateHandleOp(head, key, 'x.test')
      await expectRefused({ ...op, extra: true }, /unexpected field "extra"/)
      const res = await post(d, '{"type": "plc_operation",', true)
      expect(res.status).toBe(400)
      expect(typeof res.body.message).toBe('string')
    })

    it('a legacy create for a new DID', async () => {
      const k = await Secp256k1Keypair.create()
      const op = await plc.deprecatedSignCreate(
        { type: 'create', signingKey: k.did(), recoveryKey: k.did(), handle: 'legacy.test', service: 'https://pds.example.com', prev: null },
        k,
      )
      const target = await plc.didForCreateOp(op)
      await expectRefused(op, /legacy "create"/, target)
      expect((await get(`/${target}`)).status).toBe(404)
    })

    it('a genesis posted under the wrong DID, and a path that is not a did:plc', async () => {
      const k = await Secp256k1Keypair.create()
      const { op } = await plc.createOp({ signingKey: k.did(), handle: 'c.test', pds: 'https://c.example.com', rotationKeys: [k.did()], signer: k })
      await expectRefused(op, /does not match the hash of the genesis operation/, 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
      await expectRefused(op, /not a valid did:plc identifier/, 'did:web:example.com')
    })

    it('any update of a tombstoned DID (410 on resolution)', async () => {
      await client.tombstone(d, key)
      const tombstone = await client.getLastOp(d)
      expect(tombstone.type).toBe('plc_tombstone')
      head = tombstone as never

      const doc = await get(`/${d}`)
      expect(doc.status).toBe(410)
      expect(doc.body.message).toMatch(/DID not available/)
      expect((await get(`/${d}/data`)).status).toBe(410)

      const op = await plc.signOperation(
        {
          type: 'plc_operation',
          rotationKeys: [key.did()],
          verificationMethods: {},
          alsoKnownAs: ['at://back.test'],
          services: {},
          prev: opCid(tombstone as never),
        },
        key,
      )
      await expectRefused(op, /tombstoned/)
      const resolver = new IdResolver({ plcUrl: url })
      await expect(resolver.did.resolve(d, true)).rejects.toMatchObject({ status: 410 })
    })
  })

  it('serializes concurrent updates of one DID', async () => {
    const k = await Secp256k1Keypair.create()
    const d = await createDid([k], k)
    const genesis = (await client.getLastOp(d)) as plc.Operation
    const ops = await Promise.all(['one.test', 'two.test', 'three.test'].map((h) => plc.updateHandleOp(genesis, k, h)))
    const results = await Promise.all(ops.map((op) => post(d, op)))
    expect(results.map((r) => r.status).sort()).toEqual([200, 400, 400])
    for (const r of results.filter((x) => x.status === 400)) expect(r.body.message).toMatch(/higher authority/)
    const audit = await client.getAuditableLog(d)
    expect(audit).toHaveLength(2)
    expect(audit.map((e) => e.nullified)).toEqual([false, false])
  })

  it('decides same-tick submissions for one DID one after another', async () => {
    const k = await Secp256k1Keypair.create()
    const d = await createDid([k], k)
    const genesis = (await client.getLastOp(d)) as plc.Operation
    const ops = await Promise.all(['a.test', 'b.test', 'c.test', 'd.test'].map((h) => plc.updateHandleOp(genesis, k, h)))
    // started in the same tick: each must see the log its predecessor left (no 409 head conflicts)
    const settled = await Promise.allSettled(ops.map((op) => server.submitOperation(d, op)))
    expect(settled.filter((r) => r.status === 'fulfilled')).toHaveLength(1)
    for (const r of settled) {
      if (r.status === 'rejected') expect(r.reason).toMatchObject({ statusCode: 400, code: 'insufficient-authority' })
    }
    expect(await client.getAuditableLog(d)).toHaveLength(2)
  })

  it('answers unknown DIDs with 404 and a message', async () => {
    const unknown = 'did:plc:aaaaaaaaaaaaaaaaaaaaaaaa'
    for (const path of ['', '/data', '/log', '/log/audit', '/log/last']) {
      const res = await get(`/${unknown}${path}`)
      expect(res.status).toBe(404)
      expect(res.body).toEqual({ message: `DID not registered: ${unknown}` })
    }
  })

  async function allAudit(): Promise<Map<string, plc.ExportedOp>> {
    const byCid = new Map<string, plc.ExportedOp>()
    for (const d of dids) for (const e of await client.getAuditableLog(d)) byCid.set(e.cid, e)
    return byCid
  }

  async function exportBySeq(count: number): Promise<any[]> {
    const all: any[] = []
    let after = 0
    for (;;) {
      const res = await get(`/export?after=${after}&count=${count}`)
      expect(res.status).toBe(200)
      expect(res.type).toMatch(/^application\/jsonlines/)
      if (res.text === '') break
      const lines = res.text.split('\n').map((l) => JSON.parse(l))
      expect(lines.length).toBeLessThanOrEqual(count)
      all.push(...lines)
      after = lines.at(-1).seq
    }
    return all
  }

  it('exports every operation in pages, by seq and in the legacy timestamp format', async () => {
    const audit = await allAudit()
    const lines = await exportBySeq(3)
    expect(lines).toHaveLength(audit.size)
    for (let i = 0; i < lines.length; i++) {
      const l = lines[i]
      expect(Object.keys(l).sort()).toEqual(['cid', 'createdAt', 'did', 'operation', 'seq', 'type'])
      expect(l.type).toBe('sequenced_op')
      if (i > 0) expect(l.seq).toBeGreaterThan(lines[i - 1].seq)
      const entry = audit.get(l.cid)!
      expect(entry).toBeDefined()
      expect(l.did).toBe(entry.did)
      expect(l.createdAt).toBe(entry.createdAt)
      expect(l.operation).toEqual(entry.operation)
      expect(opCid(l.operation)).toBe(l.cid)
    }

    // legacy format: no `after`, createdAt order, nullified flags
    const legacy = await client.export(undefined, 1000)
    expect(legacy).toHaveLength(audit.size)
    for (const l of legacy) {
      expect(l.nullified).toBe(audit.get(l.cid)!.nullified)
      expect(Object.keys(l).sort()).toEqual(['cid', 'createdAt', 'did', 'nullified', 'operation'])
    }
    const times = legacy.map((l) => l.createdAt)
    expect([...times].sort()).toEqual(times)
    const page = await get(`/export?after=${encodeURIComponent(times[2]!)}&count=4`)
    const pageLines = page.text.split('\n').map((l) => JSON.parse(l))
    expect(pageLines.length).toBeLessThanOrEqual(4)
    for (const l of pageLines) expect(l.createdAt > times[2]!).toBe(true)

    // count is capped at 1000 and must be a positive integer; after must be a seq or a timestamp
    expect((await get('/export?after=0&count=5000')).text.split('\n')).toHaveLength(audit.size)
    for (const q of ['count=0', 'count=abc', 'count=-1', 'after=yesterday']) {
      const res = await get(`/export?${q}`)
      expect(res.status, q).toBe(400)
      expect(res.body.message).toMatch(/Invalid (count|after) parameter/)
    }
  })

  it('serves health, metrics and a home page', async () => {
    expect((await get('/xrpc/_health')).body).toEqual({ version: 'test-1.2.3' })
    expect(await client.health()).toEqual({ version: 'test-1.2.3' })
    const metrics = await get('/metrics')
    expect(metrics.status).toBe(200)
    expect(metrics.text).toMatch(/plc_operations_total\{result="accepted",kind="plc_operation"\} \d+/)
    expect(metrics.text).toMatch(/plc_operations_total\{result="rejected",kind="bad-signature"\} \d+/)
    expect(metrics.text).toMatch(/plc_nullified_operations_total [1-9]/)
    expect(metrics.text).toMatch(/plc_http_requests_total\{method="POST",route="\/:did",status="400"\}/)
    const home = await get('/')
    expect(home.status).toBe(200)
    expect(home.type).toMatch(/^text\/plain/)
    expect(home.text).toMatch(/did:plc directory/)
  })

  it('keeps everything across a restart on the same data directory', async () => {
    const auditBefore = await Promise.all(dids.map((d) => client.getAuditableLog(d)))
    const exportBefore = await exportBySeq(1000)
    const docBefore = await client.getDocument(did)
    const oldUrl = url

    await server.close()
    await expect(fetch(`${oldUrl}/xrpc/_health`)).rejects.toThrow()
    await startServer()

    expect(await Promise.all(dids.map((d) => client.getAuditableLog(d)))).toEqual(auditBefore)
    expect(await exportBySeq(1000)).toEqual(exportBefore)
    expect(await client.getDocument(did)).toEqual(docBefore)

    // and it keeps working: the current rotation key can still update, with a later seq
    await client.updateHandle(did, newRotation, 'alice3.test')
    const after = await exportBySeq(1000)
    expect(after).toHaveLength(exportBefore.length + 1)
    expect(after.at(-1).seq).toBeGreaterThan(exportBefore.at(-1).seq)
    const resolver = new IdResolver({ plcUrl: url })
    expect((await resolver.did.resolveAtprotoData(did, true)).handle).toBe('alice3.test')
  })
})
