/**
 * Composable moderation end to end, on the network `stratos dev` runs (startDevNetwork with its labeler on
 * N+4): the labeler account set up through the PDS's PLC operation flow; a user who subscribes to the
 * labeler with @atproto/api (app.bsky.actor preferences); labels published with `stratos label add|remove`;
 * the views read through the PDS's proxy carry them, and @atproto/api's moderatePost / moderateProfile
 * (the clients' own logic, with the user's preferences and the labeler's definitions from getServices)
 * decide blur and hide. Negations and expiry take labels away; a labeler whose DID document names another
 * key has its labels dropped and counted. A report sent through the PDS reaches the labeler and
 * `stratos label reports` lists it.
 */
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent, moderatePost, moderateProfile, type AppBskyFeedDefs, type ModerationOpts } from '@atproto/api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { importKeypair } from '@stratos/core/crypto'
import { freePortBase, DEV_LABELER_HANDLE, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'
import { LabelerServer, initLabeler, readConfig as readLabelerConfig } from '@stratos/labeler'
import { jsonLines, runCli, type RunResult } from './helpers.js'

async function until<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000): Promise<T> {
  const deadline = Date.now() + timeoutMs
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

function expectOk(r: RunResult, what: string): void {
  expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
}

describe('composable moderation on the dev network', () => {
  let dir: string
  let network: DevNetwork
  let labelerDid: string
  let labelerFlags: string[]
  let alice: AtpAgent
  let bob: AtpAgent
  let carol: AtpAgent
  let post: { uri: string; cid: string }
  let rogue: LabelerServer | undefined

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-moderation-'))
    network = await startDevNetwork({ dataDir: dir, portBase: await freePortBase(), logLevel: 'silent', labeler: true })
    await waitForHealth(network.urls)
    labelerDid = network.labelerDid!
    labelerFlags = ['--labeler', network.urls.labeler!, '--admin-password', network.secrets.labelerAdminPassword]
    const signup = async (name: string) => {
      const agent = new AtpAgent({ service: network.urls.pds })
      await agent.createAccount({ handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-password` })
      return agent
    }
    alice = await signup('alice')
    bob = await signup('bob')
    carol = await signup('carol')
    await carol.upsertProfile(() => ({ displayName: 'Carol' }))
    post = await alice.post({ text: 'an adult picture (imagine)', createdAt: new Date().toISOString() })
  }, 90_000)

  afterAll(async () => {
    await rogue?.close()
    await network?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  /** bob's moderation options, as a client builds them: his preferences and his labelers' definitions */
  async function bobModeration(): Promise<ModerationOpts> {
    const prefs = await bob.getPreferences()
    bob.configureLabelers(prefs.moderationPrefs.labelers.map((l) => l.did))
    return { userDid: bob.session!.did, prefs: prefs.moderationPrefs, labelDefs: await bob.getLabelDefinitions(prefs) }
  }

  async function bobSees(uri: string): Promise<AppBskyFeedDefs.PostView | undefined> {
    return (await bob.getPosts({ uris: [uri] })).data.posts[0]
  }

  it('the labeler account is set up: service record indexed, DID document with #atproto_label and #atproto_labeler', async () => {
    const doc = await (await fetch(`${network.urls.plc}/${labelerDid}`)).json()
    const key = await importKeypair(network.secrets.labelerSigningKeyHex, 'k256')
    expect(doc.verificationMethod).toContainEqual(expect.objectContaining({ id: `${labelerDid}#atproto_label`, publicKeyMultibase: key.did().slice('did:key:'.length) }))
    expect(doc.service).toContainEqual(expect.objectContaining({ id: '#atproto_labeler', type: 'AtprotoLabeler', serviceEndpoint: network.urls.labeler }))
    expect(doc.alsoKnownAs).toEqual([`at://${DEV_LABELER_HANDLE}`])
    const services = await until('the AppView to index the labeler record', async () => {
      const res = await bob.app.bsky.labeler.getServices({ dids: [labelerDid], detailed: true })
      return res.data.views.length === 1 ? res.data.views : undefined
    })
    expect(services[0]).toMatchObject({ creator: { did: labelerDid, handle: DEV_LABELER_HANDLE }, policies: { labelValues: expect.arrayContaining(['porn', '!hide']) } })
  })

  it('stratos labeler init: record, then the DID document in two steps (the emailed code), then nothing to do', async () => {
    const acct = new AtpAgent({ service: network.urls.pds })
    await acct.createAccount({ handle: 'mod2.test', email: 'mod2@example.com', password: 'mod2-password' })
    const flags = ['--pds', network.urls.pds, '--identifier', 'mod2.test', '--password', 'mod2-password', '--labeler-url', 'http://127.0.0.1:1/']
    const first = await runCli(['labeler', 'init', ...flags])
    expectOk(first, 'labeler init (first step)')
    expect(first.stdout).toContain(`labeler account mod2.test (${acct.session!.did})\n`)
    expect(first.stdout).toContain(`service record  at://${acct.session!.did}/app.bsky.labeler.service/self\n`)
    expect(first.stdout).toContain('DID document    a confirmation code was emailed to the account: run again with --token CODE\n')
    expect(first.stdout).toContain(`LABELER_DID=${acct.session!.did}\n`)
    const keyHex = first.stdout.match(/^LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX=([0-9a-f]{64})$/m)![1]!
    const code = network.pds.ctx.mailer.lastMailTo('mod2@example.com')!.text.match(/code:\s+(\S+)/)![1]!
    const second = await runCli(['labeler', 'init', ...flags, '--signing-key-hex', keyHex, '--token', code, '--plc', network.urls.plc])
    expectOk(second, 'labeler init (second step)')
    const key = await importKeypair(keyHex, 'k256')
    expect(second.stdout).toContain(`DID document    updated: #atproto_label ${key.did()}, #atproto_labeler http://127.0.0.1:1\n`)
    expect(second.stdout).not.toContain('LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX')
    const doc = await (await fetch(`${network.urls.plc}/${acct.session!.did}`)).json()
    expect(doc.service).toContainEqual(expect.objectContaining({ id: '#atproto_labeler', serviceEndpoint: 'http://127.0.0.1:1' }))
    expect(doc.service).toContainEqual(expect.objectContaining({ id: '#atproto_pds', serviceEndpoint: network.urls.pds }))
    const third = await runCli(['labeler', 'init', ...flags, '--signing-key-hex', keyHex, '--plc', network.urls.plc, '--json'])
    expectOk(third, 'labeler init (again)')
    expect(JSON.parse(third.stdout)).toMatchObject({ did: acct.session!.did, didDocumentUpdated: false, tokenRequested: false, labelKey: key.did() })
    const bad = await runCli(['labeler', 'init', ...flags, '--signing-key-hex', 'xyz'])
    expect(bad.code).toBe(2)
  })

  it('a subscribed user: the post labeled porn is hidden or blurred by @atproto/api as his preferences say; the profile labeled !hide is hidden', async () => {
    await bob.addLabeler(labelerDid)
    const added = await runCli(['label', 'add', post.uri, 'porn', ...labelerFlags])
    expectOk(added, 'label add porn')
    expect(added.stdout).toMatch(new RegExp(`^labeled ${post.uri.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} porn \\(seq \\d+\\)\\n$`))
    expectOk(await runCli(['label', 'add', carol.session!.did, '!hide', ...labelerFlags]), 'label add !hide')

    let mod = await bobModeration()
    const view = await until('the label in the post view', async () => {
      const v = await bobSees(post.uri)
      return v?.labels?.some((l) => l.val === 'porn') ? v : undefined
    })
    expect(view.labels).toEqual([expect.objectContaining({ src: labelerDid, uri: post.uri, val: 'porn' })])
    // adult content off (the default): porn is hidden, no override
    let decision = moderatePost(view, mod)
    expect(decision.ui('contentList').filter).toBe(true)
    expect(decision.ui('contentMedia').blur).toBe(true)
    expect(decision.ui('contentMedia').noOverride).toBe(true)
    // adult content on, porn set to warn: shown in lists, media blurred, can be revealed
    await bob.setAdultContentEnabled(true)
    await bob.setContentLabelPref('porn', 'warn')
    mod = await bobModeration()
    decision = moderatePost(view, mod)
    expect(decision.ui('contentList').filter).toBe(false)
    expect(decision.ui('contentMedia').blur).toBe(true)
    expect(decision.ui('contentMedia').noOverride).toBe(false)
    // ignore: nothing
    await bob.setContentLabelPref('porn', 'ignore')
    decision = moderatePost(view, await bobModeration())
    expect(decision.ui('contentMedia').blur).toBe(false)
    await bob.setContentLabelPref('porn', 'warn')

    const profile = await until('the !hide label on the profile', async () => {
      const p = (await bob.getProfile({ actor: carol.session!.did })).data
      return p.labels?.some((l) => l.val === '!hide') ? p : undefined
    })
    const pd = moderateProfile(profile, await bobModeration())
    expect(pd.ui('profileList').filter).toBe(true)
    expect(pd.ui('profileView').blur).toBe(true)
    expect(pd.ui('displayName').blur).toBe(true)

    // a user who does not subscribe to the labeler gets none of its labels
    const plain = new AtpAgent({ service: network.urls.pds })
    await plain.login({ identifier: 'alice.test', password: 'alice-password' })
    plain.configureLabelers([])
    expect((await plain.getPosts({ uris: [post.uri] })).data.posts[0]!.labels).toEqual([])
  })

  it('stratos label list shows the labels; label remove publishes a negation that takes the label away', async () => {
    const list = await runCli(['label', 'list', '--json', ...labelerFlags])
    expectOk(list, 'label list')
    expect(jsonLines(list.stdout).map((l: any) => `${l.label.uri} ${l.label.val}`)).toEqual([`${post.uri} porn`, `${carol.session!.did} !hide`])
    const human = await runCli(['label', 'list', '--uri', 'did:*', ...labelerFlags])
    expectOk(human, 'label list --uri')
    expect(human.stdout).toMatch(/^SEQ +SUBJECT +VALUE +STATE +CREATED +EXPIRES\n\d+ +did:plc:\w+ +!hide +active /)

    const removed = await runCli(['label', 'remove', post.uri, 'porn', ...labelerFlags])
    expectOk(removed, 'label remove')
    await until('the negation to reach the view', async () => (await bobSees(post.uri))?.labels?.length === 0)
    expect(moderatePost((await bobSees(post.uri))!, await bobModeration()).ui('contentMedia').blur).toBe(false)
    const after = await runCli(['label', 'list', '--json', '--uri', post.uri, ...labelerFlags])
    expect(jsonLines(after.stdout)).toEqual([expect.objectContaining({ label: expect.objectContaining({ val: 'porn', neg: true }) })])
    const again = await runCli(['label', 'remove', post.uri, 'porn', ...labelerFlags])
    expect(again.code).toBe(1)
    expect(again.stderr).toContain('LabelNotFound')
  })

  it('an expired label disappears from the views', async () => {
    const exp = new Date(Date.now() + 3000).toISOString()
    expectOk(await runCli(['label', 'add', post.uri, 'sexual', '--exp', exp, ...labelerFlags]), 'label add --exp')
    await until('the expiring label', async () => (await bobSees(post.uri))?.labels?.some((l) => l.val === 'sexual'))
    await until('the expiry', async () => (await bobSees(post.uri))?.labels?.length === 0, 15_000)
    expect(Date.now()).toBeGreaterThanOrEqual(Date.parse(exp))
  })

  it('labels signed with a key the DID document does not name are dropped and counted', async () => {
    // a second labeler account whose DID document names one key while its labeler signs with another
    const rogueAgent = new AtpAgent({ service: network.urls.pds })
    await rogueAgent.createAccount({ handle: 'rogue.test', email: 'rogue@example.com', password: 'rogue-password' })
    const announced = await importKeypair('11'.repeat(32), 'k256')
    const port = new URL(network.urls.labeler!).port
    rogue = await LabelerServer.create(
      readLabelerConfig({
        LABELER_DID: rogueAgent.session!.did,
        LABELER_PORT: '0',
        LABELER_DATA_DIRECTORY: ':memory:',
        LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX: '22'.repeat(32),
        LABELER_ADMIN_PASSWORD: 'rogue-admin',
        LOG_LEVEL: 'silent',
      }),
    )
    await rogue.start()
    expect(port).not.toBe(new URL(rogue.url).port)
    await initLabeler({
      pdsUrl: network.urls.pds,
      identifier: 'rogue.test',
      password: 'rogue-password',
      labelerUrl: rogue.url,
      labelKey: announced.did(),
      token: async () => network.pds.ctx.mailer.lastMailTo('rogue@example.com')!.text.match(/code:\s+(\S+)/)![1]!,
    })
    const metric = async () => {
      const text = await (await fetch(`${network.urls.appview}/metrics`)).text()
      return Number(text.match(/^appview_labels_rejected_total\{reason="bad-signature"\} (\d+)/m)?.[1] ?? 0)
    }
    const before = await metric()
    expectOk(await runCli(['label', 'add', post.uri, 'porn', '--labeler', rogue.url, '--admin-password', 'rogue-admin']), 'rogue label')
    await until('the AppView to reject the rogue label', async () => (await metric()) > before, 20_000)
    await bob.addLabeler(rogueAgent.session!.did)
    await bobModeration()
    const view = await bobSees(post.uri)
    expect(view!.labels).toEqual([])
  })

  it('a report sent through the PDS reaches the labeler; stratos label reports lists it', async () => {
    const reporter = bob.withProxy('atproto_labeler', labelerDid)
    const sent = await reporter.com.atproto.moderation.createReport({
      reasonType: 'com.atproto.moderation.defs#reasonSexual',
      reason: 'unlabeled adult content',
      subject: { $type: 'com.atproto.repo.strongRef', uri: post.uri, cid: post.cid },
    })
    expect(sent.data).toMatchObject({ reportedBy: bob.session!.did, subject: { uri: post.uri } })
    const r = await runCli(['label', 'reports', ...labelerFlags])
    expectOk(r, 'label reports')
    expect(r.stdout).toMatch(/^ID +CREATED +REASON +SUBJECT +REPORTED BY +TEXT\n/)
    expect(r.stdout).toContain(`reasonSexual  ${post.uri}  ${bob.session!.did}  unlabeled adult content`)
    const json = await runCli(['label', 'reports', '--json', ...labelerFlags])
    expect(jsonLines(json.stdout)).toEqual([expect.objectContaining({ id: sent.data.id, reportedBy: bob.session!.did, reason: 'unlabeled adult content' })])
    const noPassword = await runCli(['label', 'reports', '--labeler', network.urls.labeler!])
    expect(noPassword.code).toBe(2)
  })
})
