/**
 * Batched hydration (one query per kind, keys bound as one list: hydration/sql.ts) against a reference
 * computed in plain code from whole-table reads, on a generated graph: actors with profiles, counts and
 * labeler services; the viewer's follows, blocks, list blocks, mutes and list mutes in both directions;
 * third-party block edges (direct and by list) among the hydrated actors, also when actors are added in
 * a second call; posts with replies, quotes, counts, gates and the viewer's likes and reposts. Many
 * viewers (and none), several subsets. On SQLite, and on PostgreSQL when STRATOS_TEST_PG_URL is set.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { cidForCbor, jsonToLex } from '@stratos/core/data'
import { HydrationState, Hydrator } from '../src/hydration/hydrator.js'
import { fixedRows } from '../src/hydration/sql.js'
import type { AppViewServer } from '../src/server.js'
import { FakeNetwork, PG_URL, startAppView, testDb, type TestDb } from './helpers.js'

const dialects: ('sqlite' | 'postgres')[] = PG_URL ? ['sqlite', 'postgres'] : ['sqlite']

/** deterministic PRNG (mulberry32) */
function prng(seed: number): () => number {
  let a = seed
  return () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

describe.each(dialects)('batched hydration equals a per-relation reference (%s)', (dialect) => {
  let net: FakeNetwork
  let db: TestDb
  let server: AppViewServer
  const N = 24
  const dids = Array.from({ length: N }, (_, i) => `did:plc:hy${String.fromCharCode(97 + Math.floor(i / 26), 97 + (i % 26)).padStart(22, 'a')}`)
  const posts: { uri: string; cid: string; creator: string }[] = []

  beforeAll(async () => {
    net = await FakeNetwork.start()
    db = await testDb(dialect)
    server = await startAppView(net, db)
    const idx = server.ctx.indexer
    const rnd = prng(7)
    const pick = () => dids[Math.floor(rnd() * N)]!
    let t = 0
    const at = () => new Date(Date.UTC(2025, 0, 1, 0, 0, ++t)).toISOString()
    let rk = 0
    const index = async (did: string, collection: string, record: Record<string, unknown>, rkey = `r${++rk}`) => {
      const full = { $type: collection, ...record }
      const cid = cidForCbor(jsonToLex(full)).toString()
      await idx.indexOne(`at://${did}/${collection}/${rkey}`, cid, full)
      return { uri: `at://${did}/${collection}/${rkey}`, cid }
    }
    for (const [i, did] of dids.entries()) {
      await server.ctx.db
        .insertInto('actor')
        .values({ did, handle: `h${i}.test`, indexedAt: at(), upstreamStatus: i === 5 ? 'deactivated' : null })
        .onConflict((oc) => oc.column('did').doNothing())
        .execute()
      if (i % 3 === 0) await index(did, 'app.bsky.actor.profile', { displayName: `Actor ${i}`, description: `about ${i}` }, 'self')
    }
    await index(dids[4]!, 'app.bsky.labeler.service', { policies: { labelValues: [] }, createdAt: at() }, 'self')
    const pairs = (n: number) => {
      const out = new Set<string>()
      while (out.size < n) {
        const a = pick()
        const b = pick()
        if (a !== b) out.add(`${a} ${b}`)
      }
      return [...out].map((p) => p.split(' ') as [string, string])
    }
    for (const [a, b] of pairs(140)) await index(a, 'app.bsky.graph.follow', { subject: b, createdAt: at() })
    for (const [a, b] of pairs(30)) await index(a, 'app.bsky.graph.block', { subject: b, createdAt: at() })
    const lists: string[] = []
    for (let l = 0; l < 6; l++) {
      const list = await index(pick(), 'app.bsky.graph.list', { name: `list ${l}`, purpose: l % 2 ? 'app.bsky.graph.defs#modlist' : 'app.bsky.graph.defs#curatelist', createdAt: at() })
      lists.push(list.uri)
      const owner = list.uri.split('/')[2]!
      for (let k = 0; k < 5; k++) await index(owner, 'app.bsky.graph.listitem', { subject: pick(), list: list.uri, createdAt: at() })
    }
    for (let k = 0; k < 10; k++) await index(pick(), 'app.bsky.graph.listblock', { subject: lists[Math.floor(rnd() * lists.length)], createdAt: at() })
    const mutes = new Set<string>()
    for (const [a, b] of pairs(25)) mutes.add(`${a} ${b}`)
    for (const m of mutes) {
      const [mutedByDid, subjectDid] = m.split(' ') as [string, string]
      await server.ctx.db.insertInto('mute').values({ mutedByDid, subjectDid, createdAt: at() }).execute()
    }
    const listMutes = new Set<string>()
    for (let k = 0; k < 12; k++) listMutes.add(`${pick()} ${lists[Math.floor(rnd() * lists.length)]}`)
    for (const m of listMutes) {
      const [mutedByDid, listUri] = m.split(' ') as [string, string]
      await server.ctx.db.insertInto('list_mute').values({ mutedByDid, listUri, createdAt: at() }).execute()
    }
    // posts: some replies (a thread or two deep), some quotes; likes and reposts; gates on a few
    for (let p = 0; p < 60; p++) {
      const creator = pick()
      const record: Record<string, unknown> = { text: `post ${p}`, createdAt: at() }
      if (posts.length > 3 && rnd() < 0.4) {
        const parent = posts[Math.floor(rnd() * posts.length)]!
        record.reply = { root: { uri: parent.uri, cid: parent.cid }, parent: { uri: parent.uri, cid: parent.cid } }
      } else if (posts.length > 3 && rnd() < 0.3) {
        const q = posts[Math.floor(rnd() * posts.length)]!
        record.embed = { $type: 'app.bsky.embed.record', record: { uri: q.uri, cid: q.cid } }
      }
      const rkey = `p${p}`
      const made = await index(creator, 'app.bsky.feed.post', record, rkey)
      posts.push({ ...made, creator })
      if (p % 9 === 0) await index(creator, 'app.bsky.feed.threadgate', { post: made.uri, allow: [], createdAt: at() }, rkey)
      if (p % 11 === 0) await index(creator, 'app.bsky.feed.postgate', { post: made.uri, embeddingRules: [{ $type: 'app.bsky.feed.postgate#disableRule' }], createdAt: at() }, rkey)
    }
    for (let k = 0; k < 120; k++) {
      const subject = posts[Math.floor(rnd() * posts.length)]!
      await index(pick(), rnd() < 0.6 ? 'app.bsky.feed.like' : 'app.bsky.feed.repost', { subject: { uri: subject.uri, cid: subject.cid }, createdAt: at() })
    }
  })

  afterAll(async () => {
    await server?.close()
    await net?.close()
    await db?.cleanup()
  })

  async function tables() {
    const d = server.ctx.db
    const [follow, block, listItem, listBlock, mute, listMute] = await Promise.all([
      d.selectFrom('follow').select(['uri', 'creator', 'subjectDid']).execute(),
      d.selectFrom('block').select(['uri', 'creator', 'subjectDid']).execute(),
      d.selectFrom('list_item').select(['listUri', 'subjectDid']).execute(),
      d.selectFrom('list_block').select(['uri', 'creator', 'subjectUri']).execute(),
      d.selectFrom('mute').select(['mutedByDid', 'subjectDid']).execute(),
      d.selectFrom('list_mute').select(['mutedByDid', 'listUri']).execute(),
    ])
    const inList = (list: string, did: string) => listItem.some((i) => i.listUri === list && i.subjectDid === did)
    return { follow, block, listBlock, mute, listMute, inList }
  }

  it('actors: rows, counts, labeler services, the viewer state and the block edges', async () => {
    const t = await tables()
    const d = server.ctx.db
    const actorRows = await d.selectFrom('actor').selectAll().execute()
    const profiles = await d.selectFrom('profile').selectAll().execute()
    const aggs = await d.selectFrom('profile_agg').selectAll().execute()
    const labelerDids = new Set((await d.selectFrom('record').select('did').where('collection', '=', 'app.bsky.labeler.service').execute()).map((r) => r.did))
    let checkedEdges = 0
    let checkedRelations = 0
    for (const viewer of [null, ...dids.slice(0, 12)]) {
      const rnd = prng(dids.indexOf(viewer ?? '') + 100)
      const subset = dids.filter(() => rnd() < 0.6)
      const later = dids.filter((d) => !subset.includes(d) && rnd() < 0.7)
      const state = new HydrationState(viewer, [])
      await server.ctx.hydrator.actors(state, [...subset, 'did:plc:unknownunknownunknownaa'])
      await server.ctx.hydrator.blocksAmong(state, subset)
      // a second round adds actors: edges between the old and the new ones in both directions
      await server.ctx.hydrator.actors(state, later)
      await server.ctx.hydrator.blocksAmong(state, later)
      expect(state.actors.get('did:plc:unknownunknownunknownaa')).toBeNull()
      for (const did of [...subset, ...later]) {
        const row = actorRows.find((r) => r.did === did)!
        const prof = profiles.find((p) => p.creator === did)
        const agg = aggs.find((a) => a.did === did)
        const a = state.actors.get(did)!
        expect(a.handle).toBe(row.handle)
        expect(a.upstreamStatus).toBe(row.upstreamStatus)
        expect(a.profile?.uri ?? null).toBe(prof?.uri ?? null)
        expect(a.profile?.displayName ?? null).toBe(prof?.displayName ?? null)
        expect(state.profileAggs.get(did)).toEqual({
          followers: Number(agg?.followersCount ?? 0),
          follows: Number(agg?.followsCount ?? 0),
          posts: Number(agg?.postsCount ?? 0),
          lists: Number(agg?.listsCount ?? 0),
          feedgens: Number(agg?.feedgensCount ?? 0),
          starterPacks: Number(agg?.starterPacksCount ?? 0),
        })
        expect(state.labelerActors.has(did)).toBe(labelerDids.has(did))
        if (!viewer) {
          expect(state.actorViewers.has(did)).toBe(false)
          continue
        }
        const v = state.actorViewers.get(did)!
        const expected = {
          following: t.follow.find((f) => f.creator === viewer && f.subjectDid === did)?.uri,
          followedBy: t.follow.find((f) => f.creator === did && f.subjectDid === viewer)?.uri,
          blocking: t.block.find((b) => b.creator === viewer && b.subjectDid === did)?.uri,
          blockedBy: t.block.some((b) => b.creator === did && b.subjectDid === viewer) || undefined,
          muted: t.mute.some((m) => m.mutedByDid === viewer && m.subjectDid === did) || undefined,
        }
        expect({ following: v.following, followedBy: v.followedBy, blocking: v.blocking, blockedBy: v.blockedBy, muted: v.muted }).toEqual(expected)
        // by list: any list that applies is a right answer
        const blockingLists = t.listBlock.filter((lb) => lb.creator === viewer && t.inList(lb.subjectUri, did)).map((lb) => lb.subjectUri)
        const blockedLists = t.listBlock.filter((lb) => lb.creator === did && t.inList(lb.subjectUri, viewer)).map((lb) => lb.subjectUri)
        const mutedLists = t.listMute.filter((m) => m.mutedByDid === viewer && t.inList(m.listUri, did)).map((m) => m.listUri)
        for (const [got, want] of [
          [v.blockingByList, blockingLists],
          [v.blockedByList, blockedLists],
          [v.mutedByList, mutedLists],
        ] as const) {
          if (want.length === 0) expect(got).toBeUndefined()
          else expect(want).toContain(got)
          if (got) checkedRelations++
        }
        if (v.blockingByList) expect(state.lists.get(v.blockingByList)?.uri).toBe(v.blockingByList)
        if (v.mutedByList) expect(state.lists.get(v.mutedByList)?.uri).toBe(v.mutedByList)
      }
      const among = new Set([...subset, ...later])
      const edges = new Set<string>()
      for (const b of t.block) if (among.has(b.creator) && among.has(b.subjectDid)) edges.add(`${b.creator} ${b.subjectDid}`)
      for (const lb of t.listBlock) for (const did of among) if (among.has(lb.creator) && t.inList(lb.subjectUri, did)) edges.add(`${lb.creator} ${did}`)
      expect([...state.blockEdges].sort()).toEqual([...edges].sort())
      checkedEdges += edges.size
    }
    // actors first hydrated without counts (post authors), then asked for with counts: the counts are loaded then
    const mixed = new HydrationState(null, [])
    await server.ctx.hydrator.actors(mixed, dids, { counts: false })
    expect(mixed.profileAggs.size).toBe(0)
    expect(mixed.labelerActors.size).toBe(0)
    await server.ctx.hydrator.actors(mixed, dids)
    for (const did of dids) {
      const agg = aggs.find((a) => a.did === did)
      expect(mixed.profileAggs.get(did)?.followers).toBe(Number(agg?.followersCount ?? 0))
      expect(mixed.labelerActors.has(did)).toBe(labelerDids.has(did))
    }
    expect(labelerDids.size).toBe(1)
    // the generated graph exercises what is compared
    expect(checkedEdges).toBeGreaterThan(20)
    expect(checkedRelations).toBeGreaterThan(3)
  })

  it('posts: rows, counts, reply context, quotes, gates and the viewer likes and reposts', async () => {
    const d = server.ctx.db
    const postRows = await d.selectFrom('post').innerJoin('record', 'record.uri', 'post.uri').select(['post.uri', 'post.creator', 'post.replyRoot', 'post.replyParent', 'post.sortAt', 'record.json']).execute()
    const aggs = await d.selectFrom('record_agg').selectAll().execute()
    const likes = await d.selectFrom('like').select(['uri', 'creator', 'subject']).execute()
    const reposts = await d.selectFrom('repost').select(['uri', 'creator', 'subject']).execute()
    const tgs = await d.selectFrom('threadgate').select(['uri', 'postUri']).execute()
    const pgs = await d.selectFrom('postgate').select(['uri', 'postUri']).execute()
    let interactions = 0
    for (const viewer of [null, ...dids.slice(0, 8)]) {
      const rnd = prng(dids.indexOf(viewer ?? '') + 200)
      const subset = posts.filter(() => rnd() < 0.5).map((p) => p.uri)
      const state = new HydrationState(viewer, [])
      await server.ctx.hydrator.posts(state, [...subset, `at://${dids[0]}/app.bsky.feed.post/missing`], { replyContext: true })
      expect(state.posts.get(`at://${dids[0]}/app.bsky.feed.post/missing`)).toBeNull()
      // everything asked for, plus reply roots and parents, plus quoted posts
      const expectedUris = new Set(subset)
      for (const u of subset) {
        const r = postRows.find((p) => p.uri === u)!
        if (r.replyRoot) expectedUris.add(r.replyRoot)
        if (r.replyParent) expectedUris.add(r.replyParent)
      }
      for (const u of [...expectedUris]) {
        const embed = (JSON.parse(postRows.find((p) => p.uri === u)!.json) as { embed?: { record?: { uri: string } } }).embed
        if (embed?.record?.uri) expectedUris.add(embed.record.uri)
      }
      for (const u of expectedUris) {
        const r = postRows.find((p) => p.uri === u)!
        const p = state.posts.get(u)!
        expect({ creator: p.creator, replyRoot: p.replyRoot, replyParent: p.replyParent, sortAt: p.sortAt, record: p.record }).toEqual({
          creator: r.creator,
          replyRoot: r.replyRoot,
          replyParent: r.replyParent,
          sortAt: r.sortAt,
          record: JSON.parse(r.json),
        })
        const agg = aggs.find((a) => a.uri === u)
        expect(state.recordAggs.get(u)).toEqual({
          likes: Number(agg?.likeCount ?? 0),
          reposts: Number(agg?.repostCount ?? 0),
          replies: Number(agg?.replyCount ?? 0),
          quotes: Number(agg?.quoteCount ?? 0),
        })
        expect(state.postgates.get(u)?.uri).toBe(pgs.find((g) => g.postUri === u)?.uri)
        const root = r.replyRoot ?? r.uri
        expect(state.threadgates.get(root)?.uri).toBe(tgs.find((g) => g.postUri === root)?.uri)
        expect(state.viewerLikes.get(u)).toBe(viewer ? likes.find((l) => l.creator === viewer && l.subject === u)?.uri : undefined)
        expect(state.viewerReposts.get(u)).toBe(viewer ? reposts.find((l) => l.creator === viewer && l.subject === u)?.uri : undefined)
        if (state.viewerLikes.get(u) || state.viewerReposts.get(u)) interactions++
      }
      // authors hydrated too
      for (const u of expectedUris) expect(state.actors.has(postRows.find((p) => p.uri === u)!.creator)).toBe(true)
    }
    expect(interactions).toBeGreaterThan(5)
  })

  it('posts: heads handed in by the caller (a thread) give the same state as heads read by the hydrator', async () => {
    const d = server.ctx.db
    const headRows = await d.selectFrom('post').select(['uri', 'cid', 'indexedAt', 'violatesThreadGate', 'violatesEmbeddingRules']).execute()
    const heads = new Map(headRows.map((h) => [h.uri, h]))
    let liked = 0
    for (const viewer of [null, ...dids.slice(0, 4)]) {
      const rnd = prng(dids.indexOf(viewer ?? '') + 300)
      const subset = posts.filter(() => rnd() < 0.5).map((p) => p.uri)
      // some of the heads known (with one post that does not exist), the rest read
      const known = new Map([...heads].filter(() => rnd() < 0.6))
      const plain = new HydrationState(viewer, [])
      await server.ctx.hydrator.posts(plain, subset, { replyContext: true })
      const given = new HydrationState(viewer, [])
      await server.ctx.hydrator.posts(given, [...subset, `at://${dids[1]}/app.bsky.feed.post/missing`], { replyContext: true, heads: known })
      expect(given.posts.get(`at://${dids[1]}/app.bsky.feed.post/missing`)).toBeNull()
      given.posts.delete(`at://${dids[1]}/app.bsky.feed.post/missing`)
      expect(known.size).toBeGreaterThan(0)
      expect(new Map([...given.posts].sort())).toEqual(new Map([...plain.posts].sort()))
      expect(new Map([...given.recordAggs].sort())).toEqual(new Map([...plain.recordAggs].sort()))
      expect(new Map([...given.viewerLikes].sort())).toEqual(new Map([...plain.viewerLikes].sort()))
      expect(new Map([...given.actorViewers].sort())).toEqual(new Map([...plain.actorViewers].sort()))
      expect([...given.blockEdges].sort()).toEqual([...plain.blockEdges].sort())
      for (const [uri, agg] of given.recordAggs) if (known.has(uri) && agg.likes > 0) liked++
    }
    // (the counts of posts whose heads were handed in are read too)
    expect(liked).toBeGreaterThan(0)
  })

  it('reads started while a write transaction is open see only committed rows', async () => {
    const did = 'did:plc:uncommittedreadaaaaaaaaaa'
    const read = () => fixedRows<{ did: string }>(server.ctx.db, 'SELECT did FROM actor WHERE did IN ?L', [{ list: [did] }])
    let during: Promise<{ did: string }[]> | undefined
    await expect(
      server.ctx.db.transaction().execute(async (tx) => {
        await tx.insertInto('actor').values({ did, handle: null, indexedAt: '2025-01-01T00:00:00.000Z', upstreamStatus: null }).execute()
        during = read()
        await new Promise((r) => setTimeout(r, 20))
        throw new Error('rolled back')
      }),
    ).rejects.toThrow('rolled back')
    expect(await during).toEqual([])
    expect(await read()).toEqual([])
  })

  it('posts: record versions kept parsed between requests follow edits, deletions, re-creations and counts', async () => {
    const idx = server.ctx.indexer
    const index = async (uri: string, record: Record<string, unknown>) => {
      const cid = cidForCbor(jsonToLex(record)).toString()
      await idx.indexOne(uri, cid, record)
      return cid
    }
    const author = dids[1]!
    const uri = `at://${author}/app.bsky.feed.post/cached1`
    const quoted = posts[3]!
    const first = { $type: 'app.bsky.feed.post', text: 'first', createdAt: '2025-02-01T00:00:00.000Z' }
    const edited = {
      $type: 'app.bsky.feed.post',
      text: 'edited',
      embed: { $type: 'app.bsky.embed.record', record: { uri: quoted.uri, cid: quoted.cid } },
      // ahead of the clock: it sorts at its indexedAt, which a re-creation changes
      createdAt: '2100-01-01T00:00:00.000Z',
    }
    // the server's hydrator (its cache warm from every earlier call) against a new one (nothing cached)
    const same = async (step: string, viewer: string | null) => {
      const cached = new HydrationState(viewer, [])
      const fresh = new HydrationState(viewer, [])
      await server.ctx.hydrator.posts(cached, [uri, ...posts.slice(0, 20).map((p) => p.uri)], { replyContext: true })
      await new Hydrator(server.ctx.db).posts(fresh, [uri, ...posts.slice(0, 20).map((p) => p.uri)], { replyContext: true })
      expect([...cached.posts].sort(), step).toEqual([...fresh.posts].sort())
      expect([...cached.recordAggs].sort(), step).toEqual([...fresh.recordAggs].sort())
      expect(server.ctx.views.post(cached, uri), step).toEqual(server.ctx.views.post(fresh, uri))
      return cached.posts.get(uri)
    }
    await index(uri, first)
    expect((await same('created', null))?.record.text).toBe('first')
    await same('created, again (cached)', dids[2]!)
    const editedCid = await index(uri, edited)
    const afterEdit = await same('edited', dids[2]!)
    expect(afterEdit?.cid).toBe(editedCid)
    expect(afterEdit?.quoteUri).toBe(quoted.uri)
    expect(afterEdit?.record.text).toBe('edited')
    await index(`at://${dids[3]}/app.bsky.feed.like/cachedlike`, { $type: 'app.bsky.feed.like', subject: { uri, cid: editedCid }, createdAt: '2025-02-03T00:00:00.000Z' })
    await same('liked', dids[3]!)
    const liked = new HydrationState(null, [])
    await server.ctx.hydrator.posts(liked, [uri])
    expect(liked.recordAggs.get(uri)?.likes).toBe(1)
    await idx.deleteOne(uri)
    expect(await same('deleted', null)).toBeNull()
    // written again with the same content (same CID): indexed anew
    await new Promise((r) => setTimeout(r, 5))
    await index(uri, edited)
    const again = await same('re-created', dids[2]!)
    expect(again?.cid).toBe(editedCid)
    expect(again?.indexedAt).not.toBe(afterEdit?.indexedAt)
    expect(again?.sortAt).toBe(again?.indexedAt)
  })
})
