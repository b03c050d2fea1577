/**
 * Network backfill (issue 10) on the dev network: 50 accounts with history (profiles, posts, replies,
 * follows, likes, reposts, a delete) written through the PDS, then a fresh AppView started afterwards
 * on the relay. It must enumerate the repos (listRepos), fetch and index them, and show every post,
 * follow and count; a backfill stopped midway must resume on the next start and end with the same
 * counts; and the backfilled AppView goes on with the live stream without a gap or a double count.
 * Runs on SQLite, and also on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { AtpAgent } from '@atproto/api'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { openPostgres } from '@stratos/core/db'
import { AppViewServer, readConfig } from '@stratos/appview'
import { freePortBase, startDevNetwork, waitForHealth, type DevNetwork } from '@stratos/dev-network'

const PG_URL = process.env.STRATOS_TEST_PG_URL
const N = 50

async function waitUntil(pred: () => Promise<boolean>, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs
  while (!(await pred())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

interface User {
  i: number
  did: string
  handle: string
  agent: AtpAgent
  posts: { uri: string; cid: string }[]
}

interface Counts {
  posts: number
  followers: number
  follows: number
}

type Snapshot = Record<string, Counts & { feed: number; likes: number }>

describe('AppView network backfill on the dev network', () => {
  let dir: string
  let network: DevNetwork
  const users: User[] = []
  const expected = new Map<string, Counts & { feed: number }>()
  /** like counts expected per post URI */
  const likeCounts = new Map<string, number>()
  /** who reposted each post (a repost of a deleted post is not in the reposter's feed) */
  const repostedBy = new Map<string, string[]>()
  const cleanups: (() => Promise<void>)[] = []

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-appview-backfill-'))
    network = await startDevNetwork({ dataDir: dir, portBase: await freePortBase(), logLevel: 'silent' })
    await waitForHealth(network.urls)

    // 50 accounts, a few at a time
    for (let start = 0; start < N; start += 10) {
      const batch = await Promise.all(
        Array.from({ length: Math.min(10, N - start) }, async (_, k) => {
          const i = start + k
          const agent = new AtpAgent({ service: network.urls.pds })
          const handle = `bf${i}-${randomBytes(2).toString('hex')}.test`
          await agent.createAccount({ handle, email: `bf${i}@example.com`, password: `pw-${i}` })
          return { i, did: agent.session!.did, handle, agent, posts: [] } as User
        }),
      )
      users.push(...batch)
    }
    for (const u of users) expected.set(u.did, { posts: 0, followers: 0, follows: 0, feed: 0 })

    // history, phase 1: a profile and 2-4 posts each (one applyWrites per account)
    const now = () => new Date().toISOString()
    await Promise.all(
      users.map(async (u) => {
        const n = 2 + (u.i % 3)
        const writes: Record<string, unknown>[] = [
          { $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.actor.profile', rkey: 'self', value: { $type: 'app.bsky.actor.profile', displayName: `User ${u.i}` } },
        ]
        for (let p = 0; p < n; p++) {
          writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.post', value: { $type: 'app.bsky.feed.post', text: `post ${p} of user ${u.i}`, createdAt: now() } })
        }
        const res = await u.agent.com.atproto.repo.applyWrites({ repo: u.did, writes: writes as never })
        for (const r of res.data.results ?? []) {
          const { uri, cid } = r as { uri: string; cid: string }
          if (uri.includes('/app.bsky.feed.post/')) u.posts.push({ uri, cid })
        }
        expected.get(u.did)!.posts += n
        expected.get(u.did)!.feed += n
        for (const p of u.posts) likeCounts.set(p.uri, 0)
      }),
    )
    // phase 2: follows (4 each), likes (3 each), a reply and a repost each; every 10th account deletes a post
    await Promise.all(
      users.map(async (u) => {
        const writes: Record<string, unknown>[] = []
        for (let k = 1; k <= 4; k++) {
          const other = users[(u.i + k * 7) % N]!
          writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.graph.follow', value: { $type: 'app.bsky.graph.follow', subject: other.did, createdAt: now() } })
          expected.get(u.did)!.follows++
          expected.get(other.did)!.followers++
        }
        for (let k = 1; k <= 3; k++) {
          const other = users[(u.i + k) % N]!
          const target = other.posts[k % other.posts.length]!
          writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.like', value: { $type: 'app.bsky.feed.like', subject: target, createdAt: now() } })
          likeCounts.set(target.uri, likeCounts.get(target.uri)! + 1)
        }
        const parent = users[(u.i + 11) % N]!.posts[0]!
        writes.push({
          $type: 'com.atproto.repo.applyWrites#create',
          collection: 'app.bsky.feed.post',
          value: { $type: 'app.bsky.feed.post', text: `reply from ${u.i}`, reply: { root: parent, parent }, createdAt: now() },
        })
        expected.get(u.did)!.posts++
        expected.get(u.did)!.feed++
        const reposted = users[(u.i + 13) % N]!.posts[1]!
        writes.push({ $type: 'com.atproto.repo.applyWrites#create', collection: 'app.bsky.feed.repost', value: { $type: 'app.bsky.feed.repost', subject: reposted, createdAt: now() } })
        expected.get(u.did)!.feed++
        repostedBy.set(reposted.uri, [...(repostedBy.get(reposted.uri) ?? []), u.did])
        await u.agent.com.atproto.repo.applyWrites({ repo: u.did, writes: writes as never })
      }),
    )
    for (const u of users.filter((x) => x.i % 10 === 0)) {
      // a post nobody liked or reposted: the last one
      const last = u.posts[u.posts.length - 1]!
      await u.agent.com.atproto.repo.deleteRecord({ repo: u.did, collection: 'app.bsky.feed.post', rkey: last.uri.split('/').pop()! })
      expected.get(u.did)!.posts--
      expected.get(u.did)!.feed--
      likeCounts.delete(last.uri)
      for (const did of repostedBy.get(last.uri) ?? []) expected.get(did)!.feed--
    }
    // the relay has seen every commit once the live AppView of the dev network shows them
    await waitUntil(async () => (await snapshot(network.appview.url)).total === expectedTotal(), 60_000, 'the live AppView to index the history')
  }, 180_000)

  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined)
    await network?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  function expectedTotal(): number {
    let t = 0
    for (const c of expected.values()) t += c.posts + c.followers + c.follows
    return t
  }

  /** Counts per account as an AppView shows them (getProfiles, getAuthorFeed) and like counts of every post. */
  async function snapshot(base: string): Promise<{ total: number; byDid: Snapshot }> {
    const agent = new AtpAgent({ service: base })
    const byDid: Snapshot = {}
    let total = 0
    for (let i = 0; i < users.length; i += 25) {
      let profiles
      try {
        profiles = (await agent.app.bsky.actor.getProfiles({ actors: users.slice(i, i + 25).map((u) => u.did) })).data.profiles
      } catch {
        return { total: -1, byDid }
      }
      for (const p of profiles) {
        byDid[p.did] = { posts: p.postsCount ?? 0, followers: p.followersCount ?? 0, follows: p.followsCount ?? 0, feed: 0, likes: 0 }
        total += (p.postsCount ?? 0) + (p.followersCount ?? 0) + (p.followsCount ?? 0)
      }
    }
    return { total, byDid }
  }

  async function fullSnapshot(base: string): Promise<Snapshot> {
    const { byDid } = await snapshot(base)
    const agent = new AtpAgent({ service: base })
    for (const u of users) {
      const feed = await agent.app.bsky.feed.getAuthorFeed({ actor: u.did, limit: 100 })
      byDid[u.did]!.feed = feed.data.feed.length
      const uris = u.posts.map((p) => p.uri).filter((uri) => likeCounts.has(uri))
      const posts = (await agent.app.bsky.feed.getPosts({ uris })).data.posts
      expect(posts.length).toBe(uris.length)
      byDid[u.did]!.likes = posts.reduce((a, p) => a + (p.likeCount ?? 0), 0)
    }
    return byDid
  }

  function expectedSnapshot(): Snapshot {
    const out: Snapshot = {}
    for (const u of users) {
      const likes = u.posts.reduce((a, p) => a + (likeCounts.get(p.uri) ?? 0), 0)
      out[u.did] = { ...expected.get(u.did)!, likes }
    }
    return out
  }

  /** A fresh AppView on the relay (its own database), started after the history was written. */
  async function freshAppView(dialect: 'sqlite' | 'postgres', extra: Record<string, string> = {}, reuse?: { dataDir: string; schema?: string }) {
    const dataDir = reuse?.dataDir ?? fs.mkdtempSync(path.join(dir, 'av-'))
    const env: Record<string, string | undefined> = { ...network.env.appview, APPVIEW_PORT: '0', APPVIEW_DATA_DIRECTORY: dataDir, LOG_LEVEL: 'silent', ...extra }
    delete env.APPVIEW_PUBLIC_URL
    delete env.APPVIEW_DID
    let schema = reuse?.schema
    if (dialect === 'postgres') {
      schema ??= `stratos_backfill_${process.pid}_${randomBytes(4).toString('hex')}`
      env.APPVIEW_DB_URL = PG_URL
      env.APPVIEW_DB_SCHEMA = schema
      if (!reuse) {
        const s = schema
        cleanups.push(async () => {
          const admin = await openPostgres(PG_URL!, { poolSize: 1 })
          try {
            await admin.db.schema.dropSchema(s).ifExists().cascade().execute()
          } finally {
            await admin.close()
          }
        })
      }
    }
    const server = await AppViewServer.create(readConfig(env as NodeJS.ProcessEnv))
    await server.start()
    return { server, dataDir, schema }
  }

  /** Drops the test's PostgreSQL schemas now: kysely's migrator finds its tables in any schema of the database. */
  async function dropSchemas(): Promise<void> {
    for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined)
  }

  const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

  for (const dialect of dialects) {
    it(`an AppView started after 50 accounts wrote their history shows all of it (${dialect})`, async () => {
      // one PDS host holds every repo: with one fetch at a time and one waiting allowed per host, the
      // backfill's 32 repos in flight wait for the host instead of being refused (and marked failed)
      const { server } = await freshAppView(dialect, { APPVIEW_REPO_FETCH_HOST_CONCURRENCY: '1', APPVIEW_REPO_FETCH_HOST_QUEUE: '1' })
      try {
        await waitUntil(async () => (await server.ctx.backfiller.status()).state === 'done', 60_000, 'the backfill to finish')
        const status = await server.ctx.backfiller.status()
        expect(status.reposTotal).toBe(N)
        expect(status.reposDone).toBe(N)
        expect(status.reposFailed).toBe(0)
        expect(await fullSnapshot(server.url)).toEqual(expectedSnapshot())
        // the same as the dev network's AppView, which saw it all live
        expect(await fullSnapshot(network.appview.url)).toEqual(expectedSnapshot())

        // progress is visible in /metrics and /admin/status
        const metrics = await (await fetch(`${server.url}/metrics`)).text()
        expect(metrics).toMatch(new RegExp(`^appview_backfill_repos_done ${N}$`, 'm'))
        expect(metrics).toMatch(new RegExp(`^appview_backfill_repos_total ${N}$`, 'm'))
        const auth = { authorization: `Basic ${Buffer.from(`admin:${network.secrets.appviewAdminPassword}`).toString('base64')}` }
        expect((await fetch(`${server.url}/admin/status`)).status).toBe(401)
        const adminStatus = (await (await fetch(`${server.url}/admin/status`, { headers: auth })).json()) as { backfill: { reposDone: number; state: string } }
        expect(adminStatus.backfill).toMatchObject({ reposDone: N, state: 'done' })

        // joined to the live stream: a new post shows up once, counts move by one
        const u = users[3]!
        const p = await u.agent.post({ text: 'after the backfill', createdAt: new Date().toISOString() })
        const agent = new AtpAgent({ service: server.url })
        await waitUntil(async () => (await agent.app.bsky.feed.getPosts({ uris: [p.uri] })).data.posts.length === 1, 20_000, 'the live post')
        expect((await agent.app.bsky.actor.getProfile({ actor: u.did })).data.postsCount).toBe(expected.get(u.did)!.posts + 1)
        expected.get(u.did)!.posts++
        expected.get(u.did)!.feed++
        await waitUntil(async () => (await snapshot(network.appview.url)).total === expectedTotal(), 20_000, 'the live AppView to see the post')
      } finally {
        await server.close()
        await dropSchemas()
      }
    }, 120_000)

    it(`a backfill stopped midway resumes on the next start and ends with the same counts (${dialect})`, async () => {
      const first = await freshAppView(dialect, { APPVIEW_BACKFILL_CONCURRENCY: '1' })
      let doneAtStop: number
      try {
        await waitUntil(async () => (await first.server.ctx.backfiller.status()).reposDone >= 10, 60_000, '10 repos backfilled')
      } finally {
        await first.server.close()
      }
      const again = await freshAppView(dialect, {}, { dataDir: first.dataDir, schema: first.schema })
      try {
        // what the stopped run left: some done, the rest pending
        const rows = await again.server.ctx.db.selectFrom('backfill_repo').select(['status']).execute()
        doneAtStop = rows.filter((r) => r.status === 'done').length
        expect(rows.length).toBe(N)
        expect(doneAtStop).toBeGreaterThanOrEqual(10)
        expect(doneAtStop).toBeLessThan(N)
        await waitUntil(async () => (await again.server.ctx.backfiller.status()).state === 'done', 60_000, 'the resumed backfill to finish')
        const status = await again.server.ctx.backfiller.status()
        expect(status.reposDone).toBe(N)
        // the resumed run fetched only what was left
        expect(again.server.ctx.ingester.stats.resyncs).toBeLessThanOrEqual(N - doneAtStop)
        expect(await fullSnapshot(again.server.url)).toEqual(expectedSnapshot())
      } finally {
        await again.server.close()
        await dropSchemas()
      }
    }, 120_000)
  }
})
