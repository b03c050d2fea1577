import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { IdResolver } from '@atproto/identity'
import { verifyRepoCar as atprotoVerifyRepoCar } from '@atproto/repo'
import { Firehose, type Event } from '@atproto/sync'
import { PlcServer } from '@stratos/plc'
import { createServiceJwt } from '@stratos/core/auth'
import { generateKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { cborEncode, cidForCbor } from '@stratos/core/data'
import { checkCommitSignature, decodeCommit, verifyRepoCar } from '@stratos/core/repo'
import { startPds, xrpc, type TestPds } from './_network.js'

const TOKEN_RE = /\b([A-Z2-7]{5}-[A-Z2-7]{5})\b/
const CREATE_ACCOUNT = 'com.atproto.server.createAccount'
const now = () => new Date().toISOString()

async function waitFor(cond: () => boolean, what: string, timeoutMs = 15_000) {
  const start = Date.now()
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

type RecordView = { uri: string; cid: string; value: unknown }
type SavedBlob = { cid: string; mimeType: string; bytes: Uint8Array }

/** Every record of a repo, collection by collection, as listRecords shows them. */
async function allRecords(agent: AtpAgent, did: string): Promise<RecordView[]> {
  const { data } = await agent.com.atproto.repo.describeRepo({ repo: did })
  const out: RecordView[] = []
  for (const collection of data.collections) {
    let cursor: string | undefined
    do {
      const page = await agent.com.atproto.repo.listRecords({ repo: did, collection, limit: 2, cursor })
      out.push(...page.data.records.map((r) => ({ uri: r.uri, cid: r.cid, value: r.value })))
      cursor = page.data.records.length === 2 ? page.data.cursor : undefined
    } while (cursor)
  }
  return out
}

/** A signed did:plc operation built by hand (the owner's own tooling), signed with a key they hold. */
async function ownPlcOp(
  key: SigningKeypair,
  fields: {
    rotationKeys: string[]
    verificationMethods: Record<string, string>
    alsoKnownAs: string[]
    services: Record<string, { type: string; endpoint: string }>
    prev: string
  },
) {
  const unsigned = { type: 'plc_operation', ...fields }
  const sig = Buffer.from(await key.sign(cborEncode(unsigned))).toString('base64url')
  return { ...unsigned, sig }
}

describe('account migration between two PDSes (AtpAgent, one PLC, loopback)', () => {
  let plc: PlcServer
  let a: TestPds
  let b: TestPds
  let idResolver: IdResolver
  let firehose: Firehose
  const events: Event[] = []
  const firehoseErrors: Error[] = []

  const plcGet = async (path: string) => {
    const res = await fetch(`${plc.url}/${path}`)
    expect(res.status, `PLC ${path}`).toBe(200)
    return (await res.json()) as any
  }
  const lastOpCid = async (did: string) => cidForCbor(await plcGet(`${did}/log/last`)).toString()
  const eventsOf = (did: string) => events.filter((e) => e.did === did)
  /** B's DID document key for a DID, from the PLC. */
  const docKey = async (did: string) => (await plcGet(`${did}/data`)).verificationMethods.atproto as string

  /** A user on A with two posts (one with an image), a like and a follow. */
  async function userOnA(name: string, opts: { recoveryKey?: string } = {}) {
    const agent = new AtpAgent({ service: a.url })
    await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-pw`, ...opts })
    const did = agent.session!.did
    const first = await agent.post({ text: `${name}'s first post`, createdAt: now() })
    const image = new Uint8Array(Array.from({ length: 300 }, (_, i) => (i * 7 + name.length) % 256))
    const up = await agent.uploadBlob(image, { encoding: 'image/png' })
    await agent.post({
      text: `${name} with a picture`,
      createdAt: now(),
      embed: { $type: 'app.bsky.embed.images', images: [{ image: up.data.blob, alt: 'pattern' }] },
    })
    await agent.like(first.uri, first.cid)
    await agent.follow('did:plc:aaaaaaaaaaaaaaaaaaaaaaaa')
    return { agent, did, password: `${name}-pw`, email: `${name}@example.com`, handle: `${name}.test`, imageCid: up.data.blob.ref.toString() }
  }

  /** What the old PDS held: the records, the repo CAR and every blob (with its MIME type). */
  async function exportFromA(agent: AtpAgent, did: string) {
    const records = await allRecords(agent, did)
    const car = (await agent.com.atproto.sync.getRepo({ did })).data
    const blobs: SavedBlob[] = []
    const cids = (await agent.com.atproto.sync.listBlobs({ did })).data.cids
    for (const cid of cids) {
      const res = await agent.com.atproto.sync.getBlob({ did, cid })
      blobs.push({ cid, mimeType: res.headers['content-type']!, bytes: res.data })
    }
    return { records, car, blobs }
  }

  /** Posts on B and checks the verifying firehose delivers the commit; then the outcomes every case shares. */
  async function assertMovedToB(user: { did: string; handle: string; password: string }, before: { records: RecordView[]; blobs: SavedBlob[] }) {
    const { did } = user
    // the DID document at the PLC points at B, with the key B holds for the account
    const data = await plcGet(`${did}/data`)
    expect(data.services.atproto_pds.endpoint).toBe(b.cfg.service.publicUrl)
    expect(data.verificationMethods.atproto).toBe((await b.pds.ctx.accounts.getSigningKey(did))!.did())
    expect(data.rotationKeys).toContain(b.pds.ctx.plcRotationKey.did())

    // logging in on B works, the account is active
    const agent = new AtpAgent({ service: b.url })
    await agent.login({ identifier: user.handle, password: user.password })
    const session = await agent.com.atproto.server.getSession()
    expect(session.data).toMatchObject({ did, handle: user.handle, active: true })

    // the records are what A had, blobs are served by B
    expect(await allRecords(agent, did)).toEqual(before.records)
    expect(before.blobs.length).toBeGreaterThan(0)
    for (const blob of before.blobs) {
      const res = await fetch(`${b.url}/xrpc/com.atproto.sync.getBlob?did=${did}&cid=${blob.cid}`)
      expect(res.status).toBe(200)
      expect(res.headers.get('content-type')).toBe(blob.mimeType)
      expect(new Uint8Array(await res.arrayBuffer())).toEqual(blob.bytes)
    }
    // B's export verifies with @atproto/repo against the key in the DID document
    const car = (await agent.com.atproto.sync.getRepo({ did })).data
    const verified = await atprotoVerifyRepoCar(car, did, await docKey(did))
    expect(verified.creates.length).toBe(before.records.length)

    // B announced the account on its firehose: identity, active account, a #sync signed with the new key
    await waitFor(() => eventsOf(did).some((e) => e.event === 'sync'), `#sync of ${did}`)
    const seen = eventsOf(did)
    const accountEvt = seen.find((e) => e.event === 'account')
    expect(accountEvt).toMatchObject({ active: true })
    expect(seen.filter((e) => e.event === 'account')).toHaveLength(1)
    const sync = seen.find((e) => e.event === 'sync') as Extract<Event, { event: 'sync' }>
    const { commit, unsignedBytes } = decodeCommit(sync.blocks.get(sync.cid)!)
    expect(commit.did).toBe(did)
    expect(checkCommitSignature(await docKey(did), unsignedBytes, commit.sig)).toBe(true)

    // a new post on B reaches B's firehose as a commit the verifying consumer accepts
    const post = await agent.post({ text: 'hello from my new home', createdAt: now() })
    await waitFor(() => eventsOf(did).some((e) => e.event === 'create'), `the new post of ${did} on the firehose`)
    const creates = eventsOf(did).filter((e) => e.event === 'create') as Extract<Event, { event: 'create' }>[]
    expect(creates.map((e) => [e.uri.toString(), e.cid.toString()])).toEqual([[post.uri, post.cid]])
    expect(firehoseErrors).toEqual([])
    return agent
  }

  beforeAll(async () => {
    plc = await PlcServer.create({ port: 0, host: '127.0.0.1', dbPath: ':memory:', version: 'test', logLevel: 'silent' })
    await plc.start()
    a = await startPds(plc.url, { PDS_MAX_REPO_IMPORT_SIZE: '200000' })
    b = await startPds(plc.url)
    idResolver = new IdResolver({ plcUrl: plc.url, fetch: globalThis.fetch })
    firehose = new Firehose({
      idResolver,
      service: b.url.replace('http', 'ws'),
      getCursor: () => 0,
      unauthenticatedCommits: false,
      unauthenticatedHandles: true,
      handleEvent: (evt) => {
        events.push(evt)
      },
      onError: (err) => firehoseErrors.push(err),
    })
    void firehose.start()
  })
  afterAll(async () => {
    await firehose?.destroy()
    await b?.close()
    await a?.close()
    await plc?.close()
  })

  it('moves an account with the old PDS\'s help, following the official steps', async () => {
    const alice = await userOnA('alice')
    const { did } = alice
    const before = await exportFromA(alice.agent, did)
    expect(before.records.map((r) => r.uri.split('/')[3]).sort()).toEqual([
      'app.bsky.feed.like',
      'app.bsky.feed.post',
      'app.bsky.feed.post',
      'app.bsky.graph.follow',
    ])

    // 1. a service-auth token from the old PDS, for the new PDS's createAccount
    const newPds = new AtpAgent({ service: b.url })
    const serverDid = (await newPds.com.atproto.server.describeServer()).data.did
    expect(serverDid).toBe(b.cfg.service.did)
    expect(serverDid).not.toBe(a.cfg.service.did)
    const token = (await alice.agent.com.atproto.server.getServiceAuth({ aud: serverDid, lxm: CREATE_ACCOUNT })).data.token

    // without proof of the DID, or with a token for another method or another service: refused
    const input = { did, handle: alice.handle, email: alice.email, password: alice.password }
    const noAuth = await xrpc(b.url, CREATE_ACCOUNT, { body: input })
    expect(noAuth.status).toBe(401)
    expect(noAuth.body.message).toMatch(/Missing auth to create account with did/)
    const otherLxm = (await alice.agent.com.atproto.server.getServiceAuth({ aud: serverDid, lxm: 'com.atproto.repo.importRepo' })).data.token
    const wrongLxm = await xrpc(b.url, CREATE_ACCOUNT, { body: input, token: otherLxm })
    expect(wrongLxm.status).toBe(401)
    expect(wrongLxm.body.error).toBe('BadJwtLexiconMethod')
    const otherAud = (await alice.agent.com.atproto.server.getServiceAuth({ aud: a.cfg.service.did, lxm: CREATE_ACCOUNT })).data.token
    const wrongAud = await xrpc(b.url, CREATE_ACCOUNT, { body: input, token: otherAud })
    expect(wrongAud.status).toBe(401)
    expect(wrongAud.body.error).toBe('BadJwtAudience')

    // 2. createAccount on B with the DID and the token: deactivated, nothing announced, no new DID
    const plcLogBefore = await plcGet(`${did}/log`)
    const seqBefore = b.pds.ctx.sequencer.lastSeq()
    await newPds.com.atproto.server.createAccount(input, { headers: { authorization: `Bearer ${token}` } })
    expect(await plcGet(`${did}/log`)).toEqual(plcLogBefore)
    expect(b.pds.ctx.sequencer.lastSeq()).toBe(seqBefore)
    // the token works once
    const replay = await xrpc(b.url, CREATE_ACCOUNT, { body: { ...input, handle: 'alice2.test', email: 'alice2@example.com' }, token })
    expect(replay.status).toBe(401)
    expect(replay.body.error).toBe('JwtReplayed')

    await newPds.login({ identifier: did, password: alice.password })
    expect((await newPds.com.atproto.server.getSession()).data).toMatchObject({ did, active: false, status: 'deactivated' })
    const empty = (await newPds.com.atproto.server.checkAccountStatus()).data
    expect(empty).toMatchObject({ activated: false, validDid: false, indexedRecords: 0, expectedBlobs: 0, importedBlobs: 0 })

    // 3. the repo: exported from A, imported into B (re-signed with B's key for the account)
    const aHead = (await alice.agent.com.atproto.sync.getLatestCommit({ did })).data
    await newPds.com.atproto.repo.importRepo(before.car, { encoding: 'application/vnd.ipld.car' })
    const imported = (await newPds.com.atproto.server.checkAccountStatus()).data
    expect(imported).toMatchObject({ activated: false, validDid: false, indexedRecords: 4, expectedBlobs: 1, importedBlobs: 0 })
    expect(imported.repoRev > aHead.rev).toBe(true)
    expect(imported.repoCommit).not.toBe(aHead.cid)
    expect(imported.repoBlocks).toBeGreaterThan(4)
    // still nothing announced, and the repo is not served while the account is deactivated
    expect(b.pds.ctx.sequencer.lastSeq()).toBe(seqBefore)
    expect((await xrpc(b.url, 'com.atproto.sync.getRepo', { params: { did } })).body.error).toBe('RepoDeactivated')
    // ...except to the account itself: the import holds A's records under a commit signed by B's key
    const bKey = (await b.pds.ctx.accounts.getSigningKey(did))!.did()
    const own = await verifyRepoCar((await newPds.com.atproto.sync.getRepo({ did })).data, did, bKey)
    expect(own.records.map((r) => `at://${did}/${r.collection}/${r.rkey}`).sort()).toEqual(before.records.map((r) => r.uri).sort())
    expect(own.commit.rev).toBe(imported.repoRev)

    // 4. blobs: listed as missing, fetched from A, uploaded to B
    const missing = (await newPds.com.atproto.repo.listMissingBlobs({ limit: 1 })).data
    expect(missing.blobs).toHaveLength(1)
    expect(missing.blobs[0]!.cid).toBe(alice.imageCid)
    expect(missing.blobs[0]!.recordUri).toMatch(new RegExp(`^at://${did}/app.bsky.feed.post/`))
    const page2 = (await newPds.com.atproto.repo.listMissingBlobs({ limit: 1, cursor: missing.cursor })).data
    expect(page2.blobs).toEqual([])
    for (const { cid } of missing.blobs) {
      const blob = await alice.agent.com.atproto.sync.getBlob({ did, cid })
      const up = await newPds.com.atproto.repo.uploadBlob(blob.data, { encoding: blob.headers['content-type'] })
      expect(up.data.blob.ref.toString()).toBe(cid)
    }
    expect((await newPds.com.atproto.repo.listMissingBlobs({})).data.blobs).toEqual([])
    expect((await newPds.com.atproto.server.checkAccountStatus()).data).toMatchObject({ expectedBlobs: 1, importedBlobs: 1 })

    // 5. the identity: B's recommended credentials, signed by A (emailed token), submitted through B
    const creds = (await newPds.com.atproto.identity.getRecommendedDidCredentials()).data
    expect(creds.services).toEqual({ atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: b.cfg.service.publicUrl } })
    await alice.agent.com.atproto.identity.requestPlcOperationSignature()
    const mail = a.pds.ctx.mailer.lastMailTo(alice.email)
    const plcToken = TOKEN_RE.exec(mail!.text)![1]!
    const signed = await alice.agent.com.atproto.identity.signPlcOperation({ token: plcToken, ...creds })

    // activation before the DID document points here is refused
    const early = await xrpc(b.url, 'com.atproto.server.activateAccount', { method: 'POST', token: newPds.session!.accessJwt })
    expect(early.status).toBe(400)
    expect(early.body.message).toMatch(/does not match PDS public url|rotation key/)

    await newPds.com.atproto.identity.submitPlcOperation({ operation: signed.data.operation })
    expect((await newPds.com.atproto.server.checkAccountStatus()).data).toMatchObject({ validDid: true, activated: false })

    // 6. activate on B, deactivate on A
    await newPds.com.atproto.server.activateAccount()
    await alice.agent.com.atproto.server.deactivateAccount({})

    await assertMovedToB(alice, before)

    // A reports the account deactivated (and refuses writes)
    expect((await alice.agent.com.atproto.sync.getRepoStatus({ did })).data).toEqual({ did, active: false, status: 'deactivated' })
    expect((await alice.agent.com.atproto.server.getSession()).data).toMatchObject({ active: false, status: 'deactivated' })
    const write = await xrpc(a.url, 'com.atproto.repo.createRecord', {
      token: alice.agent.session!.accessJwt,
      body: { repo: did, collection: 'app.bsky.feed.post', record: { $type: 'app.bsky.feed.post', text: 'x', createdAt: now() } },
    })
    expect(write.body.error).toBe('AccountDeactivated')
    // A serves the deactivated repo to nobody but alice herself (who may still want a copy)
    expect((await xrpc(a.url, 'com.atproto.sync.getRepo', { params: { did } })).body.error).toBe('RepoDeactivated')
    expect((await alice.agent.com.atproto.sync.getRepo({ did })).data).toEqual(before.car)

    // B's getBlocks serves blocks by CID, and says which it lacks
    const head = (await newPds.com.atproto.sync.getLatestCommit({ did })).data.cid
    const blocks = await xrpc(b.url, 'com.atproto.sync.getBlocks', { params: { did, cids: head } })
    expect(blocks.status).toBe(200)
    expect(blocks.headers.get('content-type')).toBe('application/vnd.ipld.car')
    const unknownCid = cidForCbor({ not: 'here' }).toString()
    const notFound = await xrpc(b.url, 'com.atproto.sync.getBlocks', { params: { did, cids: unknownCid } })
    expect(notFound.status).toBe(400)
    expect(notFound.body.error).toBe('BlockNotFound')
  })

  it('refuses an import that is not the account\'s repo', async () => {
    // carol on A; a CAR of alice's repo is refused for her, and a CAR with a forged signature too
    const carol = await userOnA('carol')
    const alice = new AtpAgent({ service: b.url })
    await alice.login({ identifier: 'alice.test', password: 'alice-pw' })
    const aliceCar = (await alice.com.atproto.sync.getRepo({ did: alice.session!.did })).data
    const post = async (car: Uint8Array) => {
      const res = await fetch(`${a.url}/xrpc/com.atproto.repo.importRepo`, {
        method: 'POST',
        headers: { authorization: `Bearer ${carol.agent.session!.accessJwt}`, 'content-type': 'application/vnd.ipld.car' },
        body: car,
      })
      const text = await res.text()
      return { status: res.status, body: (text ? JSON.parse(text) : {}) as { error?: string; message?: string } }
    }
    const wrongDid = await post(aliceCar)
    expect(wrongDid.status).toBe(400)
    expect(wrongDid.body.message).toMatch(/not did:plc/)

    // her own repo, with the commit signed by a key the DID never had
    const ownCar = (await carol.agent.com.atproto.sync.getRepo({ did: carol.did })).data
    const forged = await forgeCommitSignature(ownCar)
    const bad = await post(forged)
    expect(bad.status).toBe(400)
    expect(bad.body.message).toMatch(/not signed by any key/)
    // a CAR over the size limit (PDS_MAX_REPO_IMPORT_SIZE) is refused before it is read
    const tooBig = await post(new Uint8Array(300_000))
    expect(tooBig.status).toBe(413)
    expect(tooBig.body.error).toBe('PayloadTooLarge')
    // not a CAR at all
    const junk = await post(new Uint8Array([1, 2, 3, 4]))
    expect(junk.status).toBe(400)
    expect(junk.body.message).toMatch(/Invalid CAR/)

    // and her own export imports into her own active account (announced with a #sync)
    const seq = a.pds.ctx.sequencer.lastSeq()
    expect((await post(ownCar)).status).toBe(200)
    const types = a.pds.ctx.sequencer.log.readRowsAfter(seq, 10).filter((r) => r.did === carol.did).map((r) => r.type)
    expect(types).toEqual(['#sync'])
    expect(await allRecords(carol.agent, carol.did)).toHaveLength(4)
  })

  describe('without the old PDS\'s help (it is gone)', () => {
    let bob: Awaited<ReturnType<typeof userOnA>>
    let bobRecovery: SigningKeypair
    let bobBefore: Awaited<ReturnType<typeof exportFromA>>
    let dave: Awaited<ReturnType<typeof userOnA>>
    let daveRecovery: SigningKeypair
    let daveBefore: Awaited<ReturnType<typeof exportFromA>>

    beforeAll(async () => {
      // bob and dave hold recovery keys they gave at sign-up, and keep exports of their data
      bobRecovery = await generateKeypair('k256')
      bob = await userOnA('bob', { recoveryKey: bobRecovery.did() })
      bobBefore = await exportFromA(bob.agent, bob.did)
      daveRecovery = await generateKeypair('p256')
      dave = await userOnA('dave', { recoveryKey: daveRecovery.did() })
      daveBefore = await exportFromA(dave.agent, dave.did)
      // then A goes away
      await a.stop()
      await expect(fetch(`${a.url}/xrpc/_health`)).rejects.toThrow()
    })

    it('with a PLC operation signed by the recovery key, handed to the new PDS (createAccount plcOp)', async () => {
      const { did } = bob
      const data = await plcGet(`${did}/data`)
      expect(data.rotationKeys).toEqual([bobRecovery.did(), a.pds.ctx.plcRotationKey.did()])

      // B keeps a signing key for bob's DID
      const newPds = new AtpAgent({ service: b.url })
      const reserved = (await newPds.com.atproto.server.reserveSigningKey({ did })).data.signingKey
      expect((await newPds.com.atproto.server.reserveSigningKey({ did })).data.signingKey).toBe(reserved)

      // the operation moving the DID to B with that key, signed by bob's recovery key
      const fields = {
        rotationKeys: [bobRecovery.did()],
        verificationMethods: { atproto: reserved },
        alsoKnownAs: ['at://bob.test'],
        services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: b.cfg.service.publicUrl } },
        prev: await lastOpCid(did),
      }
      const op = await ownPlcOp(bobRecovery, fields)
      const input = { did, handle: bob.handle, email: bob.email, password: bob.password }

      // refused: no proof at all; an op signed by a key that is not a rotation key; an op not following the last
      expect((await xrpc(b.url, CREATE_ACCOUNT, { body: input })).status).toBe(401)
      const stranger = await generateKeypair('k256')
      const forged = await xrpc(b.url, CREATE_ACCOUNT, { body: { ...input, plcOp: await ownPlcOp(stranger, fields) } })
      expect(forged.status).toBe(400)
      expect(forged.body).toMatchObject({ error: 'IncompatibleDidDoc', message: expect.stringMatching(/not signed by any of the DID's current rotation keys/) })
      const stale = await xrpc(b.url, CREATE_ACCOUNT, {
        body: { ...input, plcOp: await ownPlcOp(bobRecovery, { ...fields, prev: cidForCbor({ some: 'op' }).toString() }) },
      })
      expect(stale.body.error).toBe('IncompatibleDidDoc')
      const elsewhere = await xrpc(b.url, CREATE_ACCOUNT, {
        body: { ...input, plcOp: await ownPlcOp(bobRecovery, { ...fields, verificationMethods: { atproto: stranger.did() } }) },
      })
      expect(elsewhere.body.message).toMatch(/reserved here/)
      expect(await plcGet(`${did}/data`)).toEqual(data)

      // accepted: B submits the op and creates the account, deactivated
      await newPds.com.atproto.server.createAccount({ ...input, plcOp: op })
      const moved = await plcGet(`${did}/data`)
      expect(moved.verificationMethods.atproto).toBe(reserved)
      expect(moved.services.atproto_pds.endpoint).toBe(b.cfg.service.publicUrl)
      await newPds.login({ identifier: did, password: bob.password })
      expect((await newPds.com.atproto.server.getSession()).data).toMatchObject({ active: false })

      // the repo (signed by A's key, no longer in the DID document) and the blobs bob saved
      await newPds.com.atproto.repo.importRepo(bobBefore.car, { encoding: 'application/vnd.ipld.car' })
      expect((await newPds.com.atproto.repo.listMissingBlobs({})).data.blobs.map((m) => m.cid)).toEqual(bobBefore.blobs.map((x) => x.cid))
      for (const blob of bobBefore.blobs) await newPds.com.atproto.repo.uploadBlob(blob.bytes, { encoding: blob.mimeType })
      const status = (await newPds.com.atproto.server.checkAccountStatus()).data
      expect(status).toMatchObject({ indexedRecords: 4, expectedBlobs: 1, importedBlobs: 1, validDid: false })

      // B's rotation key is not in the document yet: activation waits for it
      const early = await xrpc(b.url, 'com.atproto.server.activateAccount', { method: 'POST', token: newPds.session!.accessJwt })
      expect(early.status).toBe(400)
      expect(early.body.message).toMatch(/rotation key/)

      // bob adds B's recommended credentials himself, straight to the PLC directory
      const creds = (await newPds.com.atproto.identity.getRecommendedDidCredentials()).data
      expect(creds.verificationMethods).toEqual({ atproto: reserved })
      const op2 = await ownPlcOp(bobRecovery, {
        rotationKeys: [bobRecovery.did(), ...creds.rotationKeys!],
        verificationMethods: creds.verificationMethods as Record<string, string>,
        alsoKnownAs: creds.alsoKnownAs!,
        services: creds.services as Record<string, { type: string; endpoint: string }>,
        prev: await lastOpCid(did),
      })
      const submitted = await fetch(`${plc.url}/${did}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(op2) })
      expect(submitted.status).toBe(200)
      expect((await newPds.com.atproto.server.checkAccountStatus()).data.validDid).toBe(true)
      await newPds.com.atproto.server.activateAccount()

      await assertMovedToB(bob, bobBefore)
    })

    it('with a temporary key of the owner that signs the service-auth token (as with the reference PDS)', async () => {
      const { did } = dave
      // dave points the DID at B with a signing key of his own, so he can sign the createAccount token
      const temp = await generateKeypair('k256')
      await submitToPlc(
        did,
        await ownPlcOp(daveRecovery, {
          rotationKeys: [daveRecovery.did()],
          verificationMethods: { atproto: temp.did() },
          alsoKnownAs: ['at://dave.test'],
          services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: b.cfg.service.publicUrl } },
          prev: await lastOpCid(did),
        }),
      )
      const token = await createServiceJwt({ iss: did, aud: b.cfg.service.did, lxm: CREATE_ACCOUNT, keypair: temp })
      const newPds = new AtpAgent({ service: b.url })
      await newPds.com.atproto.server.createAccount(
        { did, handle: dave.handle, email: dave.email, password: dave.password },
        { headers: { authorization: `Bearer ${token}` } },
      )
      await newPds.login({ identifier: dave.handle, password: dave.password })
      await newPds.com.atproto.repo.importRepo(daveBefore.car, { encoding: 'application/vnd.ipld.car' })
      for (const blob of daveBefore.blobs) await newPds.com.atproto.repo.uploadBlob(blob.bytes, { encoding: blob.mimeType })
      expect((await newPds.com.atproto.server.checkAccountStatus()).data).toMatchObject({ indexedRecords: 4, importedBlobs: 1, validDid: false })

      // then B's credentials, signed with the recovery key and submitted through B
      const creds = (await newPds.com.atproto.identity.getRecommendedDidCredentials()).data
      const op2 = await ownPlcOp(daveRecovery, {
        rotationKeys: [daveRecovery.did(), ...creds.rotationKeys!],
        verificationMethods: creds.verificationMethods as Record<string, string>,
        alsoKnownAs: creds.alsoKnownAs!,
        services: creds.services as Record<string, { type: string; endpoint: string }>,
        prev: await lastOpCid(did),
      })
      await newPds.com.atproto.identity.submitPlcOperation({ operation: op2 })
      await newPds.com.atproto.server.activateAccount()

      await assertMovedToB(dave, daveBefore)
    })
  })

  async function submitToPlc(did: string, op: unknown) {
    const res = await fetch(`${plc.url}/${did}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(op) })
    expect(res.status, await res.clone().text()).toBe(200)
  }
})

/** The same CAR with the commit re-signed by a random key (the root CID changes with it). */
async function forgeCommitSignature(car: Uint8Array): Promise<Uint8Array> {
  const { readCarSync, writeCar } = await import('@stratos/core/repo')
  const { cborDecode } = await import('@stratos/core/data')
  const { roots, blocks } = readCarSync(car)
  const commit = cborDecode<Record<string, unknown>>(blocks.get(roots[0]!)!)
  const { sig: _sig, ...unsigned } = commit
  const key = await generateKeypair('k256')
  const forged = { ...unsigned, sig: await key.sign(cborEncode(unsigned)) }
  const forgedCid = cidForCbor(forged)
  const out: { cid: { bytes: Uint8Array }; bytes: Uint8Array }[] = [{ cid: forgedCid, bytes: cborEncode(forged) }]
  for (const [cid, bytes] of blocks) if (!cid.equals(roots[0]!)) out.push({ cid, bytes })
  return writeCar(forgedCid, out)
}
