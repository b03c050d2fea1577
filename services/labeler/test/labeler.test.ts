/**
 * The labeler on a loopback port, driven with the official clients: @atproto/api for queryLabels,
 * @atproto/xrpc-server's Subscription (the reference label consumer) for subscribeLabels, @atproto/crypto
 * and @ipld/dag-cbor to check signatures independently, @atproto/xrpc-server's createServiceJwt for the
 * service auth of createReport.
 */
import { AtpAgent, ComAtprotoLabelSubscribeLabels } from '@atproto/api'
import { Secp256k1Keypair, verifySignature } from '@atproto/crypto'
import { Subscription, createServiceJwt } from '@atproto/xrpc-server'
import * as dagCbor from '@ipld/dag-cbor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readConfig, type LabelerServer } from '../src/index.js'
import { ADMIN_PASSWORD, DidDirectory, LABELER_DID, adminCall, startLabeler, waitFor } from './helpers.js'

const ALICE = 'did:plc:aliceaaaaaaaaaaaaaaaaaaa'
const BOB = 'did:plc:bobbbbbbbbbbbbbbbbbbbbbb'
const POST = `at://${ALICE}/app.bsky.feed.post/3kabcdefghi22`
const POST2 = `at://${ALICE}/app.bsky.feed.post/3kabcdefghi33`

function checkSig(label: Record<string, unknown>, didKey: string): Promise<boolean> {
  const { sig, ...rest } = label
  const bytes = sig instanceof Uint8Array ? sig : new Uint8Array(Buffer.from((sig as { $bytes: string }).$bytes, 'base64'))
  return verifySignature(didKey, dagCbor.encode(rest), bytes)
}

describe('labeler', () => {
  let dir: DidDirectory
  let labeler: LabelerServer
  let agent: AtpAgent

  beforeAll(async () => {
    dir = await new DidDirectory().start()
    labeler = await startLabeler({ LABELER_PLC_URL: dir.url })
    agent = new AtpAgent({ service: labeler.url })
  })
  afterAll(async () => {
    await labeler?.close()
    await dir?.close()
  })

  it('signs labels (ver 1, DAG-CBOR, k256) that verify against its #atproto_label key', async () => {
    const res = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: POST, val: 'porn' } })
    expect(res.status).toBe(200)
    const label = res.body.label
    expect(label).toMatchObject({ ver: 1, src: LABELER_DID, uri: POST, val: 'porn' })
    expect(label.neg).toBeUndefined()
    expect(labeler.labelKey).toMatch(/^did:key:zQ3s/)
    expect(await checkSig(label, labeler.labelKey)).toBe(true)
    // the signature covers every field: a changed value no longer verifies
    expect(await checkSig({ ...label, val: 'sexual' }, labeler.labelKey)).toBe(false)
    const other = await Secp256k1Keypair.create()
    expect(await checkSig(label, other.did())).toBe(false)
  })

  it('queryLabels: exact URIs, trailing-* prefixes, sources, cursor', async () => {
    await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: POST2, val: 'nudity' } })
    await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: BOB, val: '!hide' } })

    const exact = await agent.com.atproto.label.queryLabels({ uriPatterns: [POST] })
    expect(exact.data.labels.map((l) => l.val)).toEqual(['porn'])
    expect(await checkSig(exact.data.labels[0] as never, labeler.labelKey)).toBe(true)

    const prefix = await agent.com.atproto.label.queryLabels({ uriPatterns: [`at://${ALICE}/*`] })
    expect(prefix.data.labels.map((l) => l.uri).sort()).toEqual([POST, POST2].sort())

    const both = await agent.com.atproto.label.queryLabels({ uriPatterns: [BOB, POST2] })
    expect(both.data.labels.map((l) => l.val).sort()).toEqual(['!hide', 'nudity'])

    const mine = await agent.com.atproto.label.queryLabels({ uriPatterns: ['*'], sources: [LABELER_DID] })
    expect(mine.data.labels).toHaveLength(3)
    const others = await agent.com.atproto.label.queryLabels({ uriPatterns: ['*'], sources: [ALICE] })
    expect(others.data.labels).toHaveLength(0)

    const page1 = await agent.com.atproto.label.queryLabels({ uriPatterns: ['*'], limit: 2 })
    expect(page1.data.labels).toHaveLength(2)
    expect(page1.data.cursor).toBeDefined()
    const page2 = await agent.com.atproto.label.queryLabels({ uriPatterns: ['*'], limit: 2, cursor: page1.data.cursor })
    expect(page2.data.labels).toHaveLength(1)
    expect(new Set([...page1.data.labels, ...page2.data.labels].map((l) => l.uri)).size).toBe(3)
  })

  it('queryLabels refuses bad input with XRPC errors', async () => {
    const noPatterns = await fetch(`${labeler.url}/xrpc/com.atproto.label.queryLabels`)
    expect(noPatterns.status).toBe(400)
    expect((await noPatterns.json()).error).toBe('InvalidRequest')
    const inner = await fetch(`${labeler.url}/xrpc/com.atproto.label.queryLabels?uriPatterns=at://did:plc:x*/y`)
    expect(inner.status).toBe(400)
    expect(await inner.json()).toMatchObject({ error: 'InvalidRequest', message: expect.stringContaining('trailing') })
    const badCursor = await fetch(`${labeler.url}/xrpc/com.atproto.label.queryLabels?uriPatterns=*&cursor=abc`)
    expect(badCursor.status).toBe(400)
  })

  it('negation and expiry take labels out of queryLabels; the admin list keeps them', async () => {
    const neg = await adminCall(labeler.url, 'com.stratos.labeler.admin.negateLabel', { body: { uri: POST2, val: 'nudity' } })
    expect(neg.status).toBe(200)
    expect(neg.body.label).toMatchObject({ uri: POST2, val: 'nudity', neg: true })
    expect(await checkSig(neg.body.label, labeler.labelKey)).toBe(true)
    const after = await agent.com.atproto.label.queryLabels({ uriPatterns: [POST2] })
    expect(after.data.labels).toEqual([])
    const again = await adminCall(labeler.url, 'com.stratos.labeler.admin.negateLabel', { body: { uri: POST2, val: 'nudity' } })
    expect(again.status).toBe(400)
    expect(again.body.error).toBe('LabelNotFound')

    const exp = new Date(Date.now() + 300).toISOString()
    const expiring = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', {
      body: { uri: ALICE, val: 'spam', exp },
    })
    expect(expiring.body.label.exp).toBe(exp)
    expect((await agent.com.atproto.label.queryLabels({ uriPatterns: [ALICE] })).data.labels).toHaveLength(1)
    await new Promise((r) => setTimeout(r, 400))
    expect((await agent.com.atproto.label.queryLabels({ uriPatterns: [ALICE] })).data.labels).toHaveLength(0)

    const list = await adminCall(labeler.url, 'com.stratos.labeler.admin.listLabels', { params: { uri: `at://${ALICE}/*` } })
    expect(list.status).toBe(200)
    const byUri = new Map(list.body.labels.map((v: any) => [v.label.uri, v.label]))
    expect((byUri.get(POST2) as any).neg).toBe(true)
    expect(byUri.get(POST)).toMatchObject({ val: 'porn' })
  })

  it('subscribeLabels: replay from a cursor, live events, FutureCursor; read by the reference consumer', async () => {
    type Msg = ComAtprotoLabelSubscribeLabels.Labels & { $type: string }
    const seen: Msg[] = []
    const abort = new AbortController()
    const sub = new Subscription<Msg>({
      service: labeler.url.replace(/^http/, 'ws'),
      method: 'com.atproto.label.subscribeLabels',
      signal: abort.signal,
      getParams: () => ({ cursor: 0 }),
      validate: (v) => {
        const res = ComAtprotoLabelSubscribeLabels.validateLabels(v)
        if (!res.success) throw res.error
        return v as Msg
      },
    })
    const reading = (async () => {
      try {
        for await (const msg of sub) seen.push(msg)
      } catch (err) {
        if (!abort.signal.aborted) throw err
      }
    })()
    // replay: the current state (POST porn, BOB !hide, POST2 negation, ALICE spam), in seq order
    await waitFor(() => seen.length >= 4, 10_000, 'replay')
    const seqs = seen.map((m) => m.seq)
    expect([...seqs].sort((a, b) => a - b)).toEqual(seqs)
    expect(seen.every((m) => m.$type === 'com.atproto.label.subscribeLabels#labels')).toBe(true)
    expect(seen.map((m) => `${m.labels[0]!.uri} ${m.labels[0]!.val}`)).toContain(`${BOB} !hide`)
    for (const m of seen) expect(await checkSig(m.labels[0] as never, labeler.labelKey)).toBe(true)
    // live
    const created = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: BOB, val: 'rude' } })
    await waitFor(() => seen.some((m) => m.labels[0]!.val === 'rude'), 10_000, 'live label')
    const live = seen.find((m) => m.labels[0]!.val === 'rude')!
    expect(live.seq).toBe(created.body.seq)
    expect(live.seq).toBeGreaterThan(Math.max(...seqs))
    abort.abort()
    await reading

    // a cursor past the head is refused with the FutureCursor error frame
    const { WebSocket } = await import('ws')
    const { decodeFrame } = await import('@stratos/core/stream')
    const ws = new WebSocket(`${labeler.url.replace(/^http/, 'ws')}/xrpc/com.atproto.label.subscribeLabels?cursor=999999`)
    const frame = await new Promise<any>((resolve, reject) => {
      ws.once('message', (data) => resolve(decodeFrame(data as Buffer)))
      ws.once('error', reject)
    })
    ws.close()
    expect(frame).toMatchObject({ op: -1, error: 'FutureCursor' })

    // a cursor in the middle replays only what follows it
    const mid = seqs[1]!
    const tail: Msg[] = []
    const abort2 = new AbortController()
    const sub2 = new Subscription<Msg>({
      service: labeler.url.replace(/^http/, 'ws'),
      method: 'com.atproto.label.subscribeLabels',
      signal: abort2.signal,
      getParams: () => ({ cursor: mid }),
      validate: (v) => v as Msg,
    })
    const reading2 = (async () => {
      try {
        for await (const msg of sub2) tail.push(msg)
      } catch (err) {
        if (!abort2.signal.aborted) throw err
      }
    })()
    await waitFor(() => tail.some((m) => m.labels[0]!.val === 'rude'), 10_000, 'tail replay')
    expect(tail.every((m) => m.seq > mid)).toBe(true)
    abort2.abort()
    await reading2
  })

  it('a replaced label gets a new seq and the stream shows the change', async () => {
    const first = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: POST, val: 'gore' } })
    const second = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: POST, val: 'gore' } })
    expect(second.body.seq).toBeGreaterThan(first.body.seq)
    expect(Date.parse(second.body.label.cts)).toBeGreaterThan(Date.parse(first.body.label.cts))
    const list = await adminCall(labeler.url, 'com.stratos.labeler.admin.listLabels', { params: { uri: POST, val: 'gore' } })
    expect(list.body.labels).toHaveLength(1)
    expect(list.body.labels[0].seq).toBe(second.body.seq)
  })

  it('admin API: Basic auth required, bad subjects refused', async () => {
    const anon = await fetch(`${labeler.url}/xrpc/com.stratos.labeler.admin.listLabels`)
    expect(anon.status).toBe(401)
    const wrong = await adminCall(labeler.url, 'com.stratos.labeler.admin.listLabels', { password: 'nope' })
    expect(wrong.status).toBe(401)
    const bad = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: 'https://example.com', val: 'x' } })
    expect(bad.status).toBe(400)
    expect(bad.body.error).toBe('InvalidRequest')
    const noVal = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: ALICE } })
    expect(noVal.status).toBe(400)
    expect(ADMIN_PASSWORD).toBeTruthy()
  })

  it('createReport: service auth from the reporter, stored and listed by the admin API', async () => {
    const reporterKey = await Secp256k1Keypair.create()
    const reporter = 'did:plc:reporteraaaaaaaaaaaaaaaa'
    dir.add(reporter, reporterKey.did())
    const subject = { $type: 'com.atproto.repo.strongRef', uri: POST, cid: 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm' }
    const send = async (jwt: string | null) =>
      fetch(`${labeler.url}/xrpc/com.atproto.moderation.createReport`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...(jwt ? { authorization: `Bearer ${jwt}` } : {}) },
        body: JSON.stringify({ reasonType: 'com.atproto.moderation.defs#reasonSexual', reason: 'not marked', subject }),
      })
    const unauth = await send(null)
    expect(unauth.status).toBe(401)
    const jwt = await createServiceJwt({
      iss: reporter,
      aud: `${LABELER_DID}#atproto_labeler`,
      lxm: 'com.atproto.moderation.createReport',
      keypair: reporterKey,
    })
    const ok = await send(jwt)
    expect(ok.status).toBe(200)
    const out = await ok.json()
    expect(out).toMatchObject({ reportedBy: reporter, reasonType: 'com.atproto.moderation.defs#reasonSexual', subject })
    // wrong audience
    const other = await createServiceJwt({ iss: reporter, aud: 'did:plc:someoneelseaaaaaaaaaaaaa', lxm: 'com.atproto.moderation.createReport', keypair: reporterKey })
    expect((await send(other)).status).toBe(401)

    const list = await adminCall(labeler.url, 'com.stratos.labeler.admin.listReports')
    expect(list.status).toBe(200)
    expect(list.body.reports).toEqual([expect.objectContaining({ id: out.id, reportedBy: reporter, reason: 'not marked', subject })])
  })

  it('config: LABELER_DID is required and validated', () => {
    expect(() => readConfig({})).toThrow(/LABELER_DID is required/)
    expect(() => readConfig({ LABELER_DID: 'nope' })).toThrow(/LABELER_DID is not a DID/)
    expect(() => readConfig({ LABELER_DID: LABELER_DID, LABELER_PORT: 'x', LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX: 'ab' })).toThrow(
      /LABELER_PORT[\s\S]*LABELER_SIGNING_KEY/,
    )
  })
})

describe('labeler storage', () => {
  it('keeps its labels, seqs and generated signing key across restarts', async () => {
    const { mkdtempSync, rmSync, existsSync } = await import('node:fs')
    const { tmpdir } = await import('node:os')
    const { join } = await import('node:path')
    const dataDir = mkdtempSync(join(tmpdir(), 'stratos-labeler-'))
    try {
      let labeler = await startLabeler({ LABELER_DATA_DIRECTORY: dataDir })
      const key = labeler.labelKey
      const a = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: ALICE, val: 'spam' } })
      const b = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: ALICE, val: 'spam' } })
      await labeler.close()
      expect(existsSync(join(dataDir, 'signing-key.k256.hex'))).toBe(true)
      labeler = await startLabeler({ LABELER_DATA_DIRECTORY: dataDir })
      try {
        expect(labeler.labelKey).toBe(key)
        const c = await adminCall(labeler.url, 'com.stratos.labeler.admin.createLabel', { body: { uri: BOB, val: 'spam' } })
        // seqs are never handed out twice, even the newest one after it was replaced
        expect(c.body.seq).toBeGreaterThan(b.body.seq)
        expect(b.body.seq).toBeGreaterThan(a.body.seq)
        const q = await new AtpAgent({ service: labeler.url }).com.atproto.label.queryLabels({ uriPatterns: ['did:*'] })
        expect(q.data.labels.map((l) => l.uri).sort()).toEqual([ALICE, BOB].sort())
        for (const l of q.data.labels) expect(await checkSig(l as never, key)).toBe(true)
      } finally {
        await labeler.close()
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true })
    }
  })
})
