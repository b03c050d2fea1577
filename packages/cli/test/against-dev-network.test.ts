/**
 * Every stratos command against a real network: the dev network (PLC, PDS, Relay, AppView) started in this
 * process with startDevNetwork, driven through the CLI's main() with captured output, and @atproto/api
 * for what a user's app does (log in, post with an image, follow). Then `stratos dev --json` and
 * `stratos pds` as child processes, as a user starts them, with examples/quickstart.mjs (the README's
 * "Build an app on it" code) run against the network `stratos dev` brought up.
 */
import { spawn } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { AtpAgent } from '@atproto/api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork, type DevSecrets } from '@stratos/dev-network'
import { main } from '../src/main.js'
import type { Io } from '../src/util/io.js'
import { ROOT, jsonLines, runCli, spawnBin, type RunResult } from './helpers.js'

// a 1x1 PNG
const PNG = Buffer.from(
  'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==',
  'base64',
)

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

async function getJson<T = Record<string, any>>(url: string): Promise<T> {
  const res = await fetch(url)
  if (!res.ok) throw new Error(`${url}: HTTP ${res.status} ${await res.text()}`)
  return (await res.json()) as T
}

/** A long-running command in this process (a service, a followed stream): live output, stopped like Ctrl-C. */
function startCli(argv: string[], env: Record<string, string> = {}) {
  const text = () => {
    const stream = new PassThrough()
    const chunks: Buffer[] = []
    stream.on('data', (c: Buffer) => chunks.push(c))
    return { stream, read: () => Buffer.concat(chunks).toString('utf8') }
  }
  const out = text()
  const err = text()
  const controller = new AbortController()
  const io: Io = { stdout: out.stream, stderr: err.stream, env, signal: controller.signal }
  const done = main(argv, io)
  return {
    stdout: out.read,
    stderr: err.read,
    done,
    /** aborts the command's signal (what bin.ts does on SIGINT) and returns its exit code */
    stop: async () => {
      controller.abort(new Error('interrupted (SIGINT)'))
      return done
    },
  }
}

/** Waits for a line on the captured stream; fails early when the command already ended. */
async function waitForOutput(read: () => string, pattern: RegExp, done: Promise<number>, what: string): Promise<RegExpMatchArray> {
  let ended: number | undefined
  void done.then((code) => (ended = code))
  return until(what, async () => {
    const m = read().match(pattern)
    if (m) return m
    if (ended !== undefined) throw new Error(`the command ended (exit ${ended}) before ${what}:\n${read()}`)
    return undefined
  })
}

function expectOk(r: RunResult, what: string): void {
  expect(r.code, `${what}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`).toBe(0)
}

describe('stratos against a running dev network (in process)', () => {
  let dir: string
  let network: DevNetwork
  let urls: DevNetwork['urls']
  let pdsFlags: string[]
  let relayFlags: string[]
  let idFlags: string[]
  let pdsHost: string
  const started: { stop(): Promise<number> }[] = []

  // what the tests build up, in order
  const alice = { did: '', password: '' }
  const bob = { did: '', password: 'bob-password-1' }
  const carol = { did: '', password: 'carol-password-1' }
  let aliceAgent: AtpAgent
  let post: { uri: string; cid: string; rkey: string }
  let blobCid: string
  let aliceRev: string

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-cli-dev-'))
    // the dev network as `stratos dev` configures it, except that the PDS requires invite codes, so that
    // `account create` has to make one through the admin API and `invite create`'s codes are put to use
    network = await startDevNetwork({
      dataDir: path.join(dir, 'net'),
      portBase: await freePortBase(),
      logLevel: 'silent',
      env: { pds: { PDS_INVITE_REQUIRED: 'true' } },
    })
    await waitForHealth(network.urls)
    urls = network.urls
    pdsFlags = ['--pds', urls.pds, '--admin-password', network.secrets.pdsAdminPassword]
    relayFlags = ['--relay', urls.relay, '--admin-password', network.secrets.relayAdminPassword]
    idFlags = ['--dev', '--plc', urls.plc, '--handle-resolver', urls.pds]
    pdsHost = new URL(urls.pds).host
  }, 60_000)

  afterAll(async () => {
    for (const s of started) await s.stop().catch(() => undefined)
    await network?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  /** The relay has processed alice's commit `rev` (its getLatestCommit says so). */
  const relayHas = (did: string, rev: string) =>
    until(`the relay to have ${did} at rev ${rev}`, async () => {
      const res = await fetch(`${urls.relay}/xrpc/com.atproto.sync.getLatestCommit?did=${did}`)
      return res.ok && ((await res.json()) as { rev: string }).rev === rev
    })

  const latestRev = async (did: string) =>
    (await getJson<{ rev: string }>(`${urls.pds}/xrpc/com.atproto.sync.getLatestCommit?did=${did}`)).rev

  it('invite create and account create: an invite code made by the admin API, or given', async () => {
    // the PDS requires a code: without the admin password there is no way to make one
    const refused = await runCli(['account', 'create', '--handle', 'alice', '--pds', urls.pds])
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('this PDS requires an invite code')

    const created = await runCli(['account', 'create', '--handle', 'alice', '--json', ...pdsFlags])
    expectOk(created, 'account create alice')
    expect(created.stderr).toMatch(/^created invite code \S+$/m)
    const a = JSON.parse(created.stdout) as Record<string, string>
    expect(a.handle).toBe('alice.test')
    expect(a.did).toMatch(/^did:plc:[a-z2-7]{24}$/)
    expect(a.email).toBe('alice.test@example.com')
    expect(a.password!.length).toBeGreaterThanOrEqual(16)
    expect(a.pds).toBe(urls.pds)
    alice.did = a.did!
    alice.password = a.password!
    // the DID is registered with the PLC directory and names the handle and the PDS
    const doc = await getJson(`${urls.plc}/${alice.did}`)
    expect(doc.alsoKnownAs).toEqual(['at://alice.test'])
    expect(doc.service[0].serviceEndpoint).toBe(urls.pds)

    const invites = await runCli(['invite', 'create', '--count', '2', '--json', ...pdsFlags])
    expectOk(invites, 'invite create --count 2')
    const codes = jsonLines(invites.stdout).map((c) => c.code as string)
    expect(codes).toHaveLength(2)
    expect(new Set(codes).size).toBe(2)

    const b = await runCli(['account', 'create', '--handle', 'bob.test', '--invite-code', codes[0]!, '--password', bob.password, '--pds', urls.pds])
    expectOk(b, 'account create bob')
    expect(b.stdout).toMatch(/^handle {4}bob\.test$/m)
    expect(b.stdout).not.toContain('password') // given, so not printed
    bob.did = b.stdout.match(/^did {7}(did:plc:\S+)$/m)![1]!

    // a single-use code cannot be used twice
    const reused = await runCli(['account', 'create', '--handle', 'carol', '--invite-code', codes[0]!, '--password', carol.password, '--pds', urls.pds])
    expect(reused.code).toBe(1)
    expect(reused.stderr).toMatch(/createAccount on .* failed: HTTP 400 InvalidInviteCode/)

    const one = await runCli(['invite', 'create', ...pdsFlags])
    expectOk(one, 'invite create')
    const lines = one.stdout.trimEnd().split('\n')
    expect(lines).toHaveLength(1)
    const c = await runCli(['account', 'create', '--handle', 'carol', '--invite-code', lines[0]!, '--password', carol.password, '--json', '--pds', urls.pds])
    expectOk(c, 'account create carol')
    carol.did = (JSON.parse(c.stdout) as { did: string }).did
  })

  it('account list: every account with handle, email and status', async () => {
    const r = await runCli(['account', 'list', '--json', ...pdsFlags])
    expectOk(r, 'account list --json')
    const rows = jsonLines(r.stdout)
    expect(rows.map((x) => x.handle).sort()).toEqual(['alice.test', 'bob.test', 'carol.test'])
    const a = rows.find((x) => x.handle === 'alice.test')!
    expect(a).toMatchObject({ did: alice.did, email: 'alice.test@example.com', status: 'active' })
    expect(Date.parse(a.createdAt as string)).toBeGreaterThan(Date.now() - 10 * 60_000)

    const human = await runCli(['account', 'list', '--search', 'bob', ...pdsFlags])
    expectOk(human, 'account list --search bob')
    expect(human.stdout).toMatch(/^DID +HANDLE +EMAIL +STATUS +CREATED$/m)
    expect(human.stdout).toMatch(new RegExp(`^${bob.did} +bob\\.test +bob\\.test@example\\.com +active `, 'm'))
    expect(human.stdout).not.toContain('alice.test')
    expect(human.stderr).toBe("1 account matching 'bob' (of 3)\n")

    const noPassword = await runCli(['account', 'list', '--pds', urls.pds])
    expect(noPassword.code).toBe(2)
    expect(noPassword.stderr).toContain('the admin password is required')
  })

  it('(setup) alice logs in with the generated password, posts an image and follows bob', async () => {
    aliceAgent = new AtpAgent({ service: urls.pds })
    await aliceAgent.login({ identifier: 'alice.test', password: alice.password })
    const upload = await aliceAgent.uploadBlob(PNG, { encoding: 'image/png' })
    blobCid = upload.data.blob.ref.toString()
    const p = await aliceAgent.post({
      text: 'hello from the stratos CLI test',
      createdAt: new Date().toISOString(),
      embed: { $type: 'app.bsky.embed.images', images: [{ image: upload.data.blob, alt: 'a pixel' }] },
    })
    post = { uri: p.uri, cid: p.cid, rkey: p.uri.split('/').pop()! }
    await aliceAgent.follow(bob.did)
    aliceRev = await latestRev(alice.did)
  })

  it('firehose <relay> --cursor 0 --limit N --verify: the whole stream, records decoded, every commit verified', async () => {
    await relayHas(alice.did, aliceRev)
    // relay_last_seq is the last seq published (durable): the account's rev is visible before its event's sync, so wait for it
    const publishedSeq = async () => Number((await (await fetch(`${urls.relay}/metrics`)).text()).match(/^relay_last_seq (\d+)$/m)![1])
    await until('the relay to publish 11 events', async () => (await publishedSeq()) >= 11)
    const lastSeq = await publishedSeq()
    expect(lastSeq).toBeGreaterThanOrEqual(11) // 3 accounts × (#identity, #account, first #commit) + post + follow

    const ws = urls.relay.replace(/^http/, 'ws')
    const r = await runCli(['firehose', ws, '--cursor', '0', '--limit', String(lastSeq), '--verify', '--dev', '--plc', urls.plc])
    expectOk(r, 'firehose')
    const events = jsonLines(r.stdout)
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: lastSeq }, (_, i) => i + 1))
    const commits = events.filter((e) => e.type === 'commit')
    expect(commits.length).toBeGreaterThanOrEqual(5)
    for (const c of commits) expect(c, JSON.stringify(c)).toMatchObject({ verified: true })

    const postCommit = commits.find((c) => (c.ops as { path: string }[]).some((op) => op.path === `app.bsky.feed.post/${post.rkey}`))!
    expect(postCommit.repo).toBe(alice.did)
    const op = (postCommit.ops as Record<string, any>[])[0]!
    expect(op).toMatchObject({ action: 'create', cid: post.cid })
    expect(op.record.text).toBe('hello from the stratos CLI test')
    expect(op.record.embed.images[0].image.ref.$link).toBe(blobCid)
    const follow = commits.find((c) => (c.ops as { path: string }[]).some((o) => o.path.startsWith('app.bsky.graph.follow/')))!
    expect((follow.ops as Record<string, any>[])[0]!.record.subject).toBe(bob.did)
    expect(events.find((e) => e.type === 'identity' && e.did === alice.did)).toMatchObject({ handle: 'alice.test' })
    expect(events.find((e) => e.type === 'account' && e.did === alice.did)).toMatchObject({ active: true })

    expect(r.stderr).toContain(`connected to ${ws}/xrpc/com.atproto.sync.subscribeRepos (cursor 0)`)
    expect(r.stderr).toContain(`${lastSeq} events, last seq ${lastSeq}`)
  })

  it('resolve alice.test: handle → DID → document → PDS → repo, each step shown', async () => {
    const human = await runCli(['resolve', 'alice.test', ...idFlags])
    expectOk(human, 'resolve alice.test')
    const doc = await getJson(`${urls.plc}/${alice.did}`)
    const key = `did:key:${doc.verificationMethod[0].publicKeyMultibase}`
    expect(human.stdout).toBe(
      [
        'handle    alice.test',
        '  dns     (skipped: special-use TLD)',
        `  https   ${alice.did}`,
        `did       ${alice.did}`,
        `  document ${urls.plc}/${alice.did}`,
        '  handle  alice.test (verified)',
        `  key     ${key}`,
        `  pds     ${urls.pds}`,
        `repo      on ${urls.pds}, 2 collections: app.bsky.feed.post, app.bsky.graph.follow`,
        '',
      ].join('\n'),
    )

    const json = await runCli(['resolve', alice.did, '--json', ...idFlags])
    expectOk(json, 'resolve did --json')
    const out = JSON.parse(json.stdout)
    expect(out).toMatchObject({ did: alice.did, claimedHandle: 'alice.test', handleVerified: true, signingKey: key, pds: urls.pds })
    expect(out.didDocument.id).toBe(alice.did)

    // without the dev PDS answering for *.test handles, the handle leads nowhere: exit 1, and the JSON says why
    const lost = await runCli(['resolve', 'alice.test', '--json', '--dev', '--plc', urls.plc])
    expect(lost.code).toBe(1)
    expect(JSON.parse(lost.stdout)).toMatchObject({ handle: 'alice.test', error: 'handle alice.test does not resolve to a DID' })
    expect(lost.stderr).toBe('stratos resolve: handle alice.test does not resolve to a DID\n')
  })

  it("resolve at://alice.test/app.bsky.feed.post/<rkey>: the post's record", async () => {
    const r = await runCli(['resolve', `at://alice.test/app.bsky.feed.post/${post.rkey}`, '--json', ...idFlags])
    expectOk(r, 'resolve at-uri')
    const out = JSON.parse(r.stdout)
    expect(out.record).toMatchObject({ uri: post.uri, cid: post.cid })
    expect(out.record.value.text).toBe('hello from the stratos CLI test')
    expect(out.record.value.embed.images[0].image).toMatchObject({ $type: 'blob', mimeType: 'image/png', size: PNG.length, ref: { $link: blobCid } })

    const human = await runCli(['resolve', post.uri, ...idFlags])
    expectOk(human, 'resolve at-uri (human)')
    expect(human.stdout).toContain(`record    ${post.uri}\n  cid     ${post.cid}\n{\n`)
    expect(human.stdout).toContain('"text": "hello from the stratos CLI test"')
  })

  it('repo export -o file.car --blobs dir, then repo inspect file.car: verified, records per collection', async () => {
    const car = path.join(dir, 'alice.car')
    const blobs = path.join(dir, 'alice-blobs')
    const r = await runCli(['repo', 'export', 'alice.test', '-o', car, '--blobs', blobs, '--json', ...idFlags])
    expectOk(r, 'repo export')
    expect(JSON.parse(r.stdout)).toMatchObject({ did: alice.did, pds: urls.pds, car, blobsDir: blobs, blobs: 1, blobBytes: PNG.length, blobsFailed: [] })
    expect(fs.readdirSync(blobs)).toEqual([blobCid])
    expect(fs.readFileSync(path.join(blobs, blobCid))).toEqual(PNG)
    expect(fs.statSync(car).size).toBe(JSON.parse(r.stdout).carBytes)

    // again: the blob is there already and is skipped
    const again = await runCli(['repo', 'export', alice.did, '-o', car, '--blobs', blobs, '--json', '--quiet', ...idFlags])
    expectOk(again, 'repo export (again)')
    expect(JSON.parse(again.stdout)).toMatchObject({ blobs: 0, blobsSkipped: 1 })
    expect(again.stderr).toBe('')

    const inspect = await runCli(['repo', 'inspect', car, '--json', ...idFlags])
    expectOk(inspect, 'repo inspect')
    const doc = await getJson(`${urls.plc}/${alice.did}`)
    const out = JSON.parse(inspect.stdout)
    expect(out.verification).toEqual({ status: 'verified', key: `did:key:${doc.verificationMethod[0].publicKeyMultibase}`, keySource: 'did-document' })
    expect(out.commit).toMatchObject({ did: alice.did, rev: aliceRev, version: 3 })
    expect(out.collections).toEqual({ 'app.bsky.feed.post': 1, 'app.bsky.graph.follow': 1 })
    expect(out.records).toBe(2)

    const human = await runCli(['repo', 'inspect', car, '--records', ...idFlags])
    expectOk(human, 'repo inspect --records')
    expect(human.stdout).toMatch(/^signature {3}verified: signature by did:key:\S+ \(from the DID document of did:plc:\S+\), MST complete$/m)
    expect(human.stdout).toContain('records     2\n  app.bsky.feed.post     1\n  app.bsky.graph.follow  1\n')
    const records = human.stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l))
    expect(records.find((x) => x.uri === post.uri)).toMatchObject({ cid: post.cid, value: { text: 'hello from the stratos CLI test' } })
  })

  it('relay hosts (public and --admin), relay ban and unban of the PDS', async () => {
    const pub = await runCli(['relay', 'hosts', '--json', '--relay', urls.relay])
    expectOk(pub, 'relay hosts')
    expect(jsonLines(pub.stdout)).toEqual([expect.objectContaining({ hostname: pdsHost, status: 'active', accountCount: 3 })])

    const noPassword = await runCli(['relay', 'hosts', '--admin', '--relay', urls.relay])
    expect(noPassword.code).toBe(2)
    const admin = await runCli(['relay', 'hosts', '--admin', ...relayFlags])
    expectOk(admin, 'relay hosts --admin')
    expect(admin.stdout).toMatch(/^HOSTNAME +STATUS +TRUSTED +ACCOUNTS +SEQ +ADDED BY +LAST EVENT$/m)
    expect(admin.stdout).toMatch(new RegExp(`^${pdsHost.replace(/\./g, '\\.')} +active +false +3 +\\d+ +\\S+`, 'm'))

    const ban = await runCli(['relay', 'ban', pdsHost, ...relayFlags])
    expectOk(ban, 'relay ban')
    expect(ban.stdout).toBe(`${pdsHost}: banned\n`)
    const banned = await runCli(['relay', 'hosts', '--admin', '--json', ...relayFlags])
    expect(jsonLines(banned.stdout)).toEqual([expect.objectContaining({ hostname: pdsHost, status: 'banned' })])
    const hidden = await runCli(['relay', 'hosts', '--relay', urls.relay])
    expectOk(hidden, 'relay hosts (banned)')
    expect(hidden.stdout).toBe('')
    expect(hidden.stderr).toBe('0 hosts\n')

    // written while the PDS is banned; after the unban the relay resumes from its cursor and gets it
    await aliceAgent.post({ text: 'written while banned', createdAt: new Date().toISOString() })
    const rev = await latestRev(alice.did)
    const unban = await runCli(['relay', 'unban', urls.pds, ...relayFlags]) // a URL is reduced to host:port
    expectOk(unban, 'relay unban')
    expect(unban.stdout).toBe(`${pdsHost}: unbanned\n`)
    const after = await runCli(['relay', 'hosts', '--admin', '--json', ...relayFlags])
    expect(jsonLines(after.stdout)[0]).toMatchObject({ hostname: pdsHost })
    expect(jsonLines(after.stdout)[0]!.status).not.toBe('banned')
    await relayHas(alice.did, rev)
    await until('the host to be active again', async () => {
      const r = await runCli(['relay', 'hosts', '--json', '--relay', urls.relay])
      return jsonLines(r.stdout)[0]?.status === 'active'
    })
  })

  it('appview backfill --wait, appview backfill --did and appview status: the AppView lists the relay\'s repos again', async () => {
    const appviewFlags = ['--appview', urls.appview, '--admin-password', network.secrets.appviewAdminPassword]
    const noPassword = await runCli(['appview', 'status', '--appview', urls.appview])
    expect(noPassword.code).toBe(2)
    const wrong = await runCli(['appview', 'status', '--appview', urls.appview, '--admin-password', 'wrong'])
    expect(wrong.code).toBe(1)
    expect(wrong.stderr).toMatch(/401/)

    const bf = await runCli(['appview', 'backfill', '--wait', '--json', ...appviewFlags])
    expectOk(bf, 'appview backfill --wait')
    expect(JSON.parse(bf.stdout)).toMatchObject({ state: 'done', reposTotal: 3, reposDone: 3, reposFailed: 0, etaSeconds: 0 })
    const one = await runCli(['appview', 'backfill', '--did', alice.did, ...appviewFlags])
    expectOk(one, 'appview backfill --did')
    expect(one.stdout).toBe(`${alice.did}: indexed\n`)

    const status = await runCli(['appview', 'status', '--json', ...appviewFlags])
    expectOk(status, 'appview status --json')
    const s = JSON.parse(status.stdout) as { ingest: { connected: boolean; cursors: Record<string, number> }; backfill: { reposDone: number } }
    expect(s.ingest.connected).toBe(true)
    expect(s.ingest.cursors[urls.relay]).toBeGreaterThan(0)
    expect(s.backfill.reposDone).toBe(3)
    const human = await runCli(['appview', 'status', ...appviewFlags])
    expectOk(human, 'appview status')
    expect(human.stdout).toMatch(/^ingest: connected, \d+ events in flight$/m)
    expect(human.stdout).toMatch(/^backfill done: 3\/3 repos done, 0 failed/m)
  })

  it('account takedown: login refused; --reverse (by handle) lets alice in again', async () => {
    const oldRefreshJwt = aliceAgent.session!.refreshJwt
    const r = await runCli(['account', 'takedown', 'alice.test', '--ref', 'TICKET-1', ...pdsFlags])
    expectOk(r, 'account takedown')
    expect(r.stdout).toBe(`${alice.did}: taken down (ref TICKET-1)\n`)
    await expect(new AtpAgent({ service: urls.pds }).login({ identifier: 'alice.test', password: alice.password })).rejects.toMatchObject({
      error: 'AccountTakedown',
    })
    // the session alice had is refused too
    await expect(aliceAgent.com.atproto.server.getSession()).rejects.toMatchObject({ error: 'AccountTakedown' })
    const list = await runCli(['account', 'list', '--json', '--search', 'alice', ...pdsFlags])
    expect(jsonLines(list.stdout)).toEqual([expect.objectContaining({ did: alice.did, status: 'takendown' })])

    // the PDS no longer resolves the handle publicly; the command finds it through the admin API
    const restore = await runCli(['account', 'takedown', 'alice.test', '--reverse', '--json', ...pdsFlags])
    expectOk(restore, 'account takedown --reverse')
    expect(JSON.parse(restore.stdout)).toMatchObject({ did: alice.did, takedown: { applied: false } })
    const again = new AtpAgent({ service: urls.pds })
    await again.login({ identifier: 'alice.test', password: alice.password })
    expect(again.session?.did).toBe(alice.did)
    // the takedown ended the earlier login: its refresh token is no longer accepted
    const refresh = await fetch(`${urls.pds}/xrpc/com.atproto.server.refreshSession`, {
      method: 'POST',
      headers: { authorization: `Bearer ${oldRefreshJwt}` },
    })
    expect(refresh.status).toBe(400)
    aliceAgent = again
  })

  it('account delete: asks (or needs --yes), then the account is gone', async () => {
    const noTerminal = await runCli(['account', 'delete', 'carol.test', ...pdsFlags])
    expect(noTerminal.code).toBe(2)
    expect(noTerminal.stderr).toContain('refusing to delete without --yes')

    const questions: string[] = []
    const declined = await runCli(['account', 'delete', 'carol.test', ...pdsFlags], {
      confirm: async (q) => {
        questions.push(q)
        return false
      },
    })
    expect(declined.code).toBe(1)
    expect(declined.stderr).toContain('not deleted')
    expect(questions).toEqual([`Delete ${carol.did} (carol.test) and all its data on ${urls.pds}?`])
    await new AtpAgent({ service: urls.pds }).login({ identifier: 'carol.test', password: carol.password })

    const r = await runCli(['account', 'delete', 'carol.test', '--yes', ...pdsFlags])
    expectOk(r, 'account delete --yes')
    expect(r.stdout).toBe(`${carol.did}: deleted\n`)
    const list = await runCli(['account', 'list', '--json', ...pdsFlags])
    expect(jsonLines(list.stdout).map((x) => x.handle).sort()).toEqual(['alice.test', 'bob.test'])
    await expect(new AtpAgent({ service: urls.pds }).login({ identifier: 'carol.test', password: carol.password })).rejects.toThrow()
    const gone = await fetch(`${urls.pds}/xrpc/com.atproto.sync.getLatestCommit?did=${carol.did}`)
    expect(gone.status).toBe(400)
  })

  it('plc, relay and appview start from their environment variables and stop cleanly on Ctrl-C', async () => {
    // a PLC directory of its own
    const plc = startCli(['plc'], { PLC_PORT: '0', PLC_DB_PATH: ':memory:', PLC_LOG_LEVEL: 'silent' })
    started.push(plc)
    const plcUrl = (await waitForOutput(plc.stderr, /^plc listening on (http:\/\/\S+)$/m, plc.done, 'the PLC to listen'))[1]!
    expect((await fetch(`${plcUrl}/xrpc/_health`)).status).toBe(200)
    expect((await fetch(`${plcUrl}/${alice.did}`)).status).toBe(404)
    expect(await plc.stop()).toBe(0)
    expect(plc.stderr()).toContain('plc: shutting down')

    // a second relay ('relay' with no subcommand) following the dev PDS
    const relayDir = path.join(dir, 'relay2')
    const relay = startCli(['relay'], {
      RELAY_PORT: '0',
      RELAY_DATA_DIRECTORY: relayDir,
      RELAY_PLC_URL: urls.plc,
      RELAY_DEV_MODE: 'true',
      RELAY_CRAWL_HOSTS: urls.pds,
      LOG_LEVEL: 'silent',
    })
    started.push(relay)
    const relayUrl = (await waitForOutput(relay.stderr, /^relay listening on (http:\/\/\S+)$/m, relay.done, 'the relay to listen'))[1]!
    // it reads the PDS's stream from the start, up to where the dev relay is
    const devRelayHosts = await runCli(['relay', 'hosts', '--json', '--relay', urls.relay])
    const upstream = jsonLines(devRelayHosts.stdout)[0]!
    expect(upstream).toMatchObject({ hostname: pdsHost, accountCount: 3 }) // carol's account was known before it was deleted
    await until('the second relay to replay the PDS', async () => {
      const r = await runCli(['relay', 'hosts', '--json', '--relay', relayUrl])
      const host = jsonLines(r.stdout)[0]
      return host?.hostname === pdsHost && host.seq === upstream.seq && host.accountCount === 3
    })
    expect(fs.existsSync(path.join(relayDir, 'relay.sqlite'))).toBe(true)

    // an AppView following the dev relay
    const appview = startCli(['appview'], {
      APPVIEW_PORT: '0',
      APPVIEW_DATA_DIRECTORY: path.join(dir, 'appview2'),
      APPVIEW_PLC_URL: urls.plc,
      APPVIEW_RELAY_URL: urls.relay,
      APPVIEW_DEV_MODE: 'true',
      APPVIEW_HANDLE_RESOLVER_URL: urls.pds,
      LOG_LEVEL: 'silent',
    })
    started.push(appview)
    const appviewUrl = (await waitForOutput(appview.stderr, /^appview listening on (http:\/\/\S+)$/m, appview.done, 'the AppView to listen'))[1]!
    // a new AppView follows the relay from now on; alice's next write makes it fetch her whole repo (first
    // sight). Her profile is written until then, since the subscription opens in the background.
    let writes = 0
    const profile = await until('the AppView to index alice', async () => {
      await aliceAgent.com.atproto.repo.putRecord({
        repo: alice.did,
        collection: 'app.bsky.actor.profile',
        rkey: 'self',
        record: { $type: 'app.bsky.actor.profile', displayName: `Alice ${++writes}` },
      })
      await new Promise((r) => setTimeout(r, 500))
      const res = await fetch(`${appviewUrl}/xrpc/app.bsky.actor.getProfile?actor=${alice.did}`)
      const body = res.ok ? ((await res.json()) as { handle: string; displayName?: string; postsCount?: number; followsCount?: number }) : undefined
      return body?.displayName?.startsWith('Alice ') ? body : undefined
    }, 40_000) // the whole test takes 11-15 s at load 5-7; on a loaded CI machine this step alone went past 20 s
    expect(profile).toMatchObject({ handle: 'alice.test', postsCount: 2, followsCount: 1 })

    expect(await relay.stop()).toBe(0)
    expect(await appview.stop()).toBe(0)
    expect(appview.stderr()).toContain('appview: shutting down')
    // the services are closed: nothing answers any more
    await expect(fetch(`${relayUrl}/xrpc/_health`)).rejects.toThrow()
    await expect(fetch(`${appviewUrl}/xrpc/_health`)).rejects.toThrow()
  }, 90_000)
})

describe('stratos as a user runs it (child processes)', () => {
  let dir: string
  const children: ReturnType<typeof spawnBin>[] = []

  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-cli-bin-dev-'))
  })
  afterAll(() => {
    for (const c of children) if (c.child.exitCode === null) c.child.kill('SIGKILL')
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  /** `stratos dev --json`: waits for its one line of URLs. */
  /** `stratos dev` (with --json: waits for its one line of URLs; without: for the whole banner). */
  async function startDev(dataDir: string, portBase: number, json = true) {
    const run = spawnBin(['dev', ...(json ? ['--json'] : []), '--data-dir', dataDir, '--port-base', String(portBase)])
    children.push(run)
    let exited: number | null = null
    run.child.on('exit', (code) => (exited = code))
    await until(
      'stratos dev to print its URLs',
      async () => {
        if (exited !== null) throw new Error(`stratos dev exited with ${exited}`)
        return json ? run.stdout().includes('\n') : run.stdout().includes('Press Ctrl-C to stop.\n')
      },
      90_000,
    )
    return run
  }

  async function sigint(run: ReturnType<typeof spawnBin>): Promise<RunResult> {
    run.child.kill('SIGINT')
    return run.done
  }

  it('dev --json prints one line of URLs once every service answers, runs the quickstart, stops on SIGINT and keeps its data; restarted, its printed example works', async () => {
    const base = await freePortBase()
    const dataDir = path.join(dir, 'data')
    const expected = {
      plc: `http://127.0.0.1:${base}`,
      pds: `http://127.0.0.1:${base + 1}`,
      relay: `http://127.0.0.1:${base + 2}`,
      appview: `http://127.0.0.1:${base + 3}`,
      labeler: `http://127.0.0.1:${base + 4}`,
    }

    const first = await startDev(dataDir, base)
    const lines = first.stdout().split('\n')
    expect(lines).toHaveLength(2) // one line and its newline
    expect(lines[1]).toBe('')
    expect(JSON.parse(lines[0]!)).toEqual(expected)
    expect(Object.keys(JSON.parse(lines[0]!))).toEqual(['plc', 'pds', 'relay', 'appview', 'labeler'])
    // printed only once every service answers its health check
    for (const url of Object.values(expected)) expect((await fetch(`${url}/xrpc/_health`)).status, url).toBe(200)

    // the README's "Build an app on it" code (readme.test.ts checks it is this file), as a user runs it
    const quick = await runNode(['examples/quickstart.mjs'], {
      STRATOS_PDS_URL: expected.pds,
      STRATOS_PLC_URL: expected.plc,
      STRATOS_RELAY_URL: expected.relay,
    })
    expect(quick.code, `quickstart\nstdout: ${quick.stdout}\nstderr: ${quick.stderr}`).toBe(0)
    const m = quick.stdout.match(/^created (alice\w+\.test) \((did:plc:\w+)\) and (bob\w+\.test) \((did:plc:\w+)\), password (\S+)$/m)!
    expect(m).toBeTruthy()
    const [, aliceHandle, aliceDid, bobHandle, , password] = m
    const postUri = quick.stdout.match(/^posted (at:\/\/\S+)$/m)![1]!
    expect(postUri.startsWith(`at://${aliceDid}/app.bsky.feed.post/`)).toBe(true)
    expect(quick.stdout).toContain(`timeline of ${bobHandle}: "Hello from Stratos!" by @${aliceHandle}, image ${expected.appview.replace('127.0.0.1', 'localhost')}/img/feed_fullsize/plain/${aliceDid}/`)
    expect(quick.stdout).toMatch(new RegExp(`^firehose: app\\.bsky\\.feed\\.post by ${aliceDid} \\(seq \\d+, verified\\)$`, 'm'))
    expect(quick.stdout).toContain('firehose: saw the post')
    expect(quick.stderr).toBe('')

    const stopped = await sigint(first)
    expect(stopped.code, stopped.stderr).toBe(0)
    expect(stopped.stdout).toBe(`${lines[0]}\n`) // nothing else on stdout, ever
    expect(stopped.stderr).toBe('dev network: shutting down\n')
    for (const url of Object.values(expected)) await expect(fetch(`${url}/xrpc/_health`)).rejects.toThrow()

    // the same data directory, started as `pnpm start` does (no --json): the accounts, the post and the
    // AppView's index are still there
    const second = await startDev(dataDir, base, false)
    const banner = second.stdout()
    const secrets = JSON.parse(fs.readFileSync(path.join(dataDir, 'dev-secrets.json'), 'utf8')) as DevSecrets
    expect(banner).toContain(`  PLC      ${expected.plc}\n`)
    expect(banner).toContain(`  PDS      ${expected.pds}   (admin password: ${secrets.pdsAdminPassword})\n`)
    expect(banner).toContain(`  Relay    ${expected.relay}   (admin password: ${secrets.relayAdminPassword}; firehose ${expected.relay.replace('http', 'ws')}/xrpc/com.atproto.sync.subscribeRepos)\n`)
    expect(banner).toContain(`  AppView  ${expected.appview}\n`)
    expect(secrets.labelerAdminPassword).toMatch(/^[0-9a-f]{16}$/)
    expect(banner).toMatch(
      new RegExp(`^  Labeler  ${expected.labeler.replace(/[.]/g, '\\.')}   \\(admin password: ${secrets.labelerAdminPassword}; account did:plc:\\w+, label with 'stratos label add `, 'm'),
    )
    const list = await runCli(['account', 'list', '--json', '--pds', expected.pds, '--admin-password', secrets.pdsAdminPassword])
    expectOk(list, 'account list after restart')
    expect(jsonLines(list.stdout)).toEqual(
      expect.arrayContaining([expect.objectContaining({ did: aliceDid, handle: aliceHandle, status: 'active' })]),
    )
    const bob = new AtpAgent({ service: expected.pds })
    await bob.login({ identifier: bobHandle!, password: password! })
    const timeline = await bob.getTimeline()
    expect(timeline.data.feed.map((f) => f.post.uri)).toContain(postUri)

    // the copy-paste example it prints works as printed: curl creates alice.test, node posts as her
    const curl = banner.match(/^ {2}curl [\s\S]*?\}'$/m)![0]
    const created = await runShell(curl)
    expect(created.code, created.stderr).toBe(0)
    expect(JSON.parse(created.stdout)).toMatchObject({ handle: 'alice.test' })
    const snippet = banner.match(/^ {2}node --input-type=module -e "[\s\S]*?\n {2}"$/m)![0]
    const posted = await runShell(snippet)
    expect(posted.code, posted.stderr).toBe(0)
    expect(posted.stdout).toMatch(/uri: 'at:\/\/did:plc:\w+\/app\.bsky\.feed\.post\/\w+'/)
    expect(posted.stdout).toMatch(/^\d+ posts in the timeline \(via the AppView\)$/m)
    expect(banner).toContain(
      `  STRATOS_PDS_URL=${expected.pds} STRATOS_PLC_URL=${expected.plc} STRATOS_RELAY_URL=${expected.relay} node examples/quickstart.mjs\n`,
    )

    const stoppedAgain = await sigint(second)
    expect(stoppedAgain.code, stoppedAgain.stderr).toBe(0)
    expect(stoppedAgain.stderr).toBe(
      `starting PLC, PDS, Relay, AppView and labeler on ports ${base}..${base + 4} (data in ${dataDir})\ndev network: shutting down\n`,
    )
  }, 240_000)

  it('pds from PDS_* variables: a bad PDS_PORT stops it with exit 1 and a message naming the variable', async () => {
    const data = path.join(dir, 'pds')
    const r = await spawnBin(['pds'], {
      PDS_HOSTNAME: 'localhost',
      PDS_DEV_MODE: 'true',
      PDS_PORT: 'http',
      PDS_DATA_DIRECTORY: data,
      PDS_BLOBSTORE_DISK_LOCATION: path.join(data, 'blobs'),
      PDS_JWT_SECRET: 'jwt-secret',
      PDS_ADMIN_PASSWORD: 'admin-password',
      PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: 'ab'.repeat(32),
    }).done
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toBe('stratos pds: invalid PDS configuration:\n  - PDS_PORT must be an integer between 0 and 65535 (got "http")\n')
    expect(fs.existsSync(data)).toBe(false) // checked before anything is written
  }, 60_000)
})

/** A command line pasted into a shell at the repository root. */
function runShell(line: string): Promise<RunResult> {
  return runProcess('bash', ['-c', line], {})
}

/** `node <args>` from the repository root, as a user runs a script. */
function runNode(args: string[], env: Record<string, string>): Promise<RunResult> {
  return runProcess(process.execPath, args, env)
}

function runProcess(command: string, args: string[], env: Record<string, string>): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const out: Buffer[] = []
    const err: Buffer[] = []
    child.stdout.on('data', (c: Buffer) => out.push(c))
    child.stderr.on('data', (c: Buffer) => err.push(c))
    const timer = setTimeout(() => child.kill('SIGKILL'), 90_000)
    child.on('error', reject)
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code: code ?? -1, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') })
    })
  })
}
