/**
 * Interop with the reference labeler, @atproto/ozone (from npm, on the machine's PostgreSQL), as a second
 * labeler on a Stratos network (startDevNetwork with its own labeler):
 *   - the ozone service account is an ordinary account on our PDS, turned into a labeler as an operator
 *     does it (`stratos labeler init`: its app.bsky.labeler.service record, and the #atproto_label key and
 *     #atproto_labeler service in its DID document through the PDS's PLC operation flow);
 *   - a moderator (an account on our PDS, one of ozone's moderators) labels a post and an account through
 *     ozone's API (tools.ozone.moderation.emitEvent, authorised by a service token our PDS issues); our
 *     AppView, which learns of ozone from the labeler record it indexed, follows ozone's subscribeLabels,
 *     verifies each label against ozone's #atproto_label key, and the views read through our PDS with
 *     `atproto-accept-labelers: <ozone DID>` carry the labels, and @atproto/api's moderatePost (with ozone's
 *     label definitions, for a user subscribed to it) acts on them; a negation through ozone removes them;
 *   - the reverse: the reference label consumer (@atproto/xrpc-server's Subscription, each message checked
 *     with @atproto/api's lexicons, each signature with @atproto/crypto against the key in the DID document
 *     as @atproto/identity resolves it) reads our labeler's subscribeLabels, and ozone's with the same code.
 * Ozone 0.4 declares Node >= 22; on Node 20 it runs with core-js's Iterator helpers (the only Node 22
 * feature it touches when loaded: `Iterator.prototype.filter`) and undici 7 (pnpm override), see the README.
 * Ozone runs in its own PostgreSQL schema, dropped at the end. Without STRATOS_TEST_PG_URL: SKIPPED.
 */
import 'core-js/actual/iterator/index.js'
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent, ComAtprotoLabelDefs, ComAtprotoLabelSubscribeLabels, moderatePost, type AppBskyFeedDefs } from '@atproto/api'
import { Secp256k1Keypair, verifySignature } from '@atproto/crypto'
import { IdResolver } from '@atproto/identity'
import { Subscription } from '@atproto/xrpc-server'
import * as dagCbor from '@ipld/dag-cbor'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openPostgres } from '@stratos/core/db'
import { initLabeler } from '@stratos/labeler'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'
import { eventually } from './_eventually.js'

const PG_URL = process.env.STRATOS_TEST_PG_URL

if (!PG_URL) {
  console.log('SKIPPED: the interop test with @atproto/ozone needs PostgreSQL (set STRATOS_TEST_PG_URL=postgres://... to run it)')
}

type LabelsMsg = ComAtprotoLabelSubscribeLabels.Labels & { $type: string }

/**
 * Reads a labeler's subscribeLabels from the start as a consumer of the reference stack does: the endpoint
 * and the #atproto_label key from the DID document (@atproto/identity), frames through @atproto/xrpc-server's
 * Subscription, every message validated against the lexicon (@atproto/api), every signature checked
 * (@atproto/crypto over the DAG-CBOR of the label without `sig`). Any failure ends the read with the error.
 */
function readLabels(idResolver: IdResolver, did: string) {
  const seen: ComAtprotoLabelDefs.Label[] = []
  const errors: unknown[] = []
  const abort = new AbortController()
  const done = (async () => {
    const doc = await idResolver.did.resolve(did, true)
    if (!doc) throw new Error(`${did} does not resolve`)
    const endpoint = doc.service?.find((s) => s.id === '#atproto_labeler' || s.id === `${did}#atproto_labeler`)?.serviceEndpoint
    const key = doc.verificationMethod?.find((m) => m.id === '#atproto_label' || m.id === `${did}#atproto_label`)
    if (typeof endpoint !== 'string' || !key?.publicKeyMultibase) throw new Error(`${did}: no #atproto_labeler or #atproto_label`)
    const didKey = `did:key:${key.publicKeyMultibase}`
    const sub = new Subscription<LabelsMsg>({
      service: endpoint.replace(/^http/, 'ws'),
      method: 'com.atproto.label.subscribeLabels',
      signal: abort.signal,
      getParams: () => ({ cursor: 0 }),
      validate: (v) => {
        const res = ComAtprotoLabelSubscribeLabels.validateLabels(v)
        if (!res.success) throw res.error
        return v as LabelsMsg
      },
    })
    for await (const msg of sub) {
      for (const label of msg.labels) {
        const valid = ComAtprotoLabelDefs.validateLabel(label)
        if (!valid.success) throw valid.error
        const { sig, ...unsigned } = label
        if (!sig || !(await verifySignature(didKey, dagCbor.encode(unsigned), sig))) {
          throw new Error(`bad signature on ${label.uri} ${label.val} from ${did}`)
        }
        seen.push(label)
      }
    }
  })().catch((err) => {
    if (!abort.signal.aborted) errors.push(err)
  })
  return {
    seen,
    errors,
    /** the current state: for each (uri, val) the newest label, kept unless it is a negation */
    current: () => {
      const latest = new Map<string, ComAtprotoLabelDefs.Label>()
      for (const l of seen) latest.set(`${l.uri} ${l.val}`, l)
      return [...latest.values()].filter((l) => !l.neg).map((l) => `${l.uri} ${l.val}`)
    },
    stop: async () => {
      abort.abort()
      await done
    },
  }
}

describe.runIf(PG_URL)('@atproto/ozone as a second labeler on a Stratos network', () => {
  const schema = `stratos_ozone_${randomBytes(6).toString('hex').replace(/[0-9]/g, (d) => 'abcdefghij'[Number(d)]!)}`
  let dir: string
  let network: DevNetwork
  let ozone: import('@atproto/ozone').OzoneService | undefined
  let ozoneUrl: string
  let ozoneDid: string
  let ozoneKey: Secp256k1Keypair
  let mod: AtpAgent
  let alice: AtpAgent
  let bob: AtpAgent
  let post: { uri: string; cid: string }
  let idResolver: IdResolver

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-ozone-'))
    const base = await freePortBase(6)
    network = await startDevNetwork({ dataDir: dir, portBase: base, logLevel: 'silent', labeler: true })
    await waitForHealth(network.urls)
    // the default fetch of @atproto/identity refuses loopback addresses (SSRF guard); the network is on 127.0.0.1
    idResolver = new IdResolver({ plcUrl: network.urls.plc, fetch: globalThis.fetch })
    const signup = async (name: string) => {
      const agent = new AtpAgent({ service: network.urls.pds })
      await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-password` })
      return agent
    }
    // the ozone service account and its moderator: ordinary accounts on our PDS
    const service = await signup('ozone')
    ozoneDid = service.session!.did
    mod = await signup('mod')
    alice = await signup('alice')
    bob = await signup('bob')
    post = await alice.post({ text: 'buy cheap watches', createdAt: new Date().toISOString() })

    // ozone, configured as its own entry point does (envToCfg / envToSecrets), on its own schema
    const oz = await import('@atproto/ozone')
    ozoneKey = await Secp256k1Keypair.create({ exportable: true })
    const port = base + 5
    ozoneUrl = `http://127.0.0.1:${port}`
    const env = {
      devMode: true,
      port,
      publicUrl: ozoneUrl,
      serverDid: ozoneDid,
      signingKeyHex: Buffer.from(await ozoneKey.export()).toString('hex'),
      adminPassword: 'ozone-admin-password',
      dbPostgresUrl: PG_URL,
      dbPostgresSchema: schema,
      dbPoolSize: 4,
      didPlcUrl: network.urls.plc,
      appviewUrl: network.urls.appview,
      appviewDid: network.env.appview.APPVIEW_DID!,
      adminDids: [ozoneDid],
      moderatorDids: [mod.session!.did],
      triageDids: [],
      cdnPaths: [],
      pdsHeaders: [],
      verifierIssuersToIndex: [],
    }
    const migration = new oz.Database({ url: PG_URL!, schema })
    await migration.migrateToLatestOrThrow()
    await migration.close()
    ozone = await oz.OzoneService.create(oz.envToCfg(env), oz.envToSecrets(env))
    await ozone.start()

    // the service account becomes a labeler: record + DID document, through our PDS (the emailed code is
    // read from the dev PDS's mailer)
    await initLabeler({
      pdsUrl: network.urls.pds,
      identifier: 'ozone.test',
      password: 'ozone-password',
      labelerUrl: ozoneUrl,
      labelKey: ozoneKey.did(),
      plcUrl: network.urls.plc,
      policies: {
        labelValues: ['spam', '!warn', 'rude'],
        labelValueDefinitions: [
          {
            identifier: 'spam',
            severity: 'inform',
            blurs: 'content',
            defaultSetting: 'hide',
            adultOnly: false,
            locales: [{ lang: 'en', name: 'Spam', description: 'Unwanted, repeated or automated content.' }],
          },
        ],
      },
      token: async () => network.pds.ctx.mailer.lastMailTo('ozone@example.com')!.text.match(/code:\s+(\S+)/)![1]!,
    })
  }, 90_000)

  afterAll(async () => {
    await ozone?.destroy().catch(() => undefined)
    await network?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
    if (PG_URL) {
      const admin = await openPostgres(PG_URL, { poolSize: 1 })
      try {
        await admin.db.schema.dropSchema(schema).ifExists().cascade().execute()
      } finally {
        await admin.close()
      }
    }
  })

  /** tools.ozone.moderation.emitEvent by the moderator, with a service token from his PDS */
  async function emitLabel(subject: Record<string, unknown>, create: string[], negate: string[]) {
    const token = await mod.com.atproto.server.getServiceAuth({ aud: ozoneDid, lxm: 'tools.ozone.moderation.emitEvent' })
    const client = new AtpAgent({ service: ozoneUrl })
    return client.tools.ozone.moderation.emitEvent(
      {
        event: { $type: 'tools.ozone.moderation.defs#modEventLabel', createLabelVals: create, negateLabelVals: negate },
        subject,
        createdBy: mod.session!.did,
      },
      { headers: { authorization: `Bearer ${token.data.token}` } },
    )
  }

  const viewer = (labelers: string[]) => {
    const agent = new AtpAgent({ service: network.urls.pds })
    agent.sessionManager.session = bob.session
    agent.configureLabelers(labelers)
    return agent
  }
  const ozoneLabels = (labels: { src: string; val: string }[] | undefined) =>
    (labels ?? []).filter((l) => l.src === ozoneDid).map((l) => l.val).sort()

  it('the ozone account is a labeler: DID document, service record indexed, AppView follows it', async () => {
    const doc = await idResolver.did.resolve(ozoneDid, true)
    expect(doc?.verificationMethod).toContainEqual(
      expect.objectContaining({ id: `${ozoneDid}#atproto_label`, publicKeyMultibase: ozoneKey.did().slice('did:key:'.length) }),
    )
    expect(doc?.service).toContainEqual(expect.objectContaining({ id: '#atproto_labeler', serviceEndpoint: ozoneUrl }))
    const services = await eventually(async () => {
      const res = await bob.app.bsky.labeler.getServices({ dids: [ozoneDid] })
      expect(res.data.views).toHaveLength(1)
      return res.data.views
    })
    expect(services[0]).toMatchObject({ creator: { did: ozoneDid, handle: 'ozone.test' } })
    await eventually(async () => expect(network.appview.ctx.labelSubscriptions?.connected(ozoneDid)).toBe(true))
  })

  it('labels from ozone reach the views of clients that accept ozone, verified against its key; a negation removes them', async () => {
    const event = await emitLabel({ $type: 'com.atproto.repo.strongRef', uri: post.uri, cid: post.cid }, ['spam'], [])
    expect(event.data).toMatchObject({ event: { $type: 'tools.ozone.moderation.defs#modEventLabel', createLabelVals: ['spam'] } })
    await emitLabel({ $type: 'com.atproto.admin.defs#repoRef', did: alice.session!.did }, ['!warn', 'rude'], [])

    const withOzone = viewer([ozoneDid])
    const seen = await eventually(async () => {
      const res = await withOzone.getPosts({ uris: [post.uri] })
      const view = res.data.posts[0] as AppBskyFeedDefs.PostView
      expect(ozoneLabels(view.labels)).toEqual(['spam'])
      expect(ozoneLabels(view.author.labels)).toEqual(['!warn', 'rude'])
      expect(res.headers['atproto-content-labelers']).toContain(ozoneDid)
      return view
    })
    expect(seen.labels!.find((l) => l.src === ozoneDid)).toMatchObject({ uri: post.uri, cid: post.cid, val: 'spam' })
    // the clients' own logic acts on them: bob subscribes to ozone; with its definition of `spam` (from
    // app.bsky.labeler.getServices) @atproto/api's moderatePost hides the post from his lists
    await bob.addLabeler(ozoneDid)
    const prefs = await bob.getPreferences()
    const modOpts = { userDid: bob.session!.did, prefs: prefs.moderationPrefs, labelDefs: await bob.getLabelDefinitions(prefs) }
    expect(modOpts.labelDefs[ozoneDid]?.map((d) => d.identifier)).toEqual(['spam'])
    expect(moderatePost(seen, modOpts).ui('contentList').filter).toBe(true)
    const profile = await withOzone.getProfile({ actor: alice.session!.did })
    expect(ozoneLabels(profile.data.labels)).toEqual(['!warn', 'rude'])
    // a client that does not accept ozone does not get its labels
    const without = await viewer([network.labelerDid!]).getPosts({ uris: [post.uri] })
    expect(ozoneLabels(without.data.posts[0]!.labels)).toEqual([])
    expect(ozoneLabels(without.data.posts[0]!.author.labels)).toEqual([])
    // every label from ozone passed the signature check
    const subs = network.appview.ctx.labelSubscriptions!
    expect((await subs.accepted.get()).values.find((v) => v.labels.labeler === ozoneDid)?.value).toBe(3)
    expect((await subs.rejected.get()).values.reduce((n, v) => n + v.value, 0)).toBe(0)

    // negations through ozone
    await emitLabel({ $type: 'com.atproto.repo.strongRef', uri: post.uri, cid: post.cid }, [], ['spam'])
    await emitLabel({ $type: 'com.atproto.admin.defs#repoRef', did: alice.session!.did }, [], ['rude'])
    const after = await eventually(async () => {
      const view = (await withOzone.getPosts({ uris: [post.uri] })).data.posts[0]!
      expect(ozoneLabels(view.labels)).toEqual([])
      expect(ozoneLabels(view.author.labels)).toEqual(['!warn'])
      return view
    })
    expect(moderatePost(after, modOpts).ui('contentList').filter).toBe(false)
  })

  it("a user's report sent through our PDS (atproto-proxy: ozone) reaches ozone's moderation queue", async () => {
    const reporter = new AtpAgent({ service: network.urls.pds })
    reporter.sessionManager.session = bob.session
    const sent = await reporter.withProxy('atproto_labeler', ozoneDid).com.atproto.moderation.createReport({
      reasonType: 'com.atproto.moderation.defs#reasonSpam',
      reason: 'sent through the Stratos PDS',
      subject: { $type: 'com.atproto.admin.defs#repoRef', did: alice.session!.did },
    })
    expect(sent.data).toMatchObject({ reportedBy: bob.session!.did, reason: 'sent through the Stratos PDS' })
    const token = await mod.com.atproto.server.getServiceAuth({ aud: ozoneDid, lxm: 'tools.ozone.moderation.queryEvents' })
    const events = await new AtpAgent({ service: ozoneUrl }).tools.ozone.moderation.queryEvents(
      { types: ['tools.ozone.moderation.defs#modEventReport'], subject: alice.session!.did },
      { headers: { authorization: `Bearer ${token.data.token}` } },
    )
    expect(events.data.events).toEqual(
      expect.arrayContaining([expect.objectContaining({ createdBy: bob.session!.did, event: expect.objectContaining({ comment: 'sent through the Stratos PDS' }) })]),
    )
  })

  it('the reference label consumer reads our labeler and ozone alike: valid messages, valid signatures', async () => {
    const add = (uri: string, val: string, neg = false) =>
      fetch(`${network.urls.labeler}/xrpc/com.stratos.labeler.admin.${neg ? 'negateLabel' : 'createLabel'}`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: `Basic ${Buffer.from(`admin:${network.secrets.labelerAdminPassword}`).toString('base64')}`,
        },
        body: JSON.stringify({ uri, val }),
      }).then(async (r) => expect(r.status, await r.text()).toBe(200))
    await add(post.uri, 'porn')
    await add(bob.session!.did, '!hide')
    await add(bob.session!.did, '!hide', true)
    await add(alice.session!.did, 'spam')

    const ours = readLabels(idResolver, network.labelerDid!)
    const theirs = readLabels(idResolver, ozoneDid)
    try {
      await eventually(async () => {
        expect(ours.errors).toEqual([])
        expect(ours.current().sort()).toEqual([`${alice.session!.did} spam`, `${post.uri} porn`].sort())
        expect(ours.seen.some((l) => l.uri === bob.session!.did && l.neg)).toBe(true)
      })
      await eventually(async () => {
        expect(theirs.errors).toEqual([])
        expect(theirs.current()).toEqual([`${alice.session!.did} !warn`])
      })
      // live: a label made now reaches the open subscription
      await add(post.uri, 'nudity')
      await eventually(async () => expect(ours.current()).toContain(`${post.uri} nudity`))
      expect(ours.seen.every((l) => l.src === network.labelerDid && l.ver === 1)).toBe(true)
      expect(theirs.seen.every((l) => l.src === ozoneDid && l.ver === 1)).toBe(true)
    } finally {
      await ours.stop()
      await theirs.stop()
    }
    expect(ours.errors).toEqual([])
    expect(theirs.errors).toEqual([])
  })
})
