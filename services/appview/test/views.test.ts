/** Pure view building from hand-made hydration states; outputs checked against the lexicons too. */
import { describe, expect, it } from 'vitest'
import { lexicons } from '@stratos/core/lexicon'
import { HydrationState, type PostInfo } from '../src/hydration/hydrator.js'
import { threadView, type ThreadNode } from '../src/views/thread.js'
import { Views } from '../src/views/views.js'

const views = new Views({ publicUrl: 'https://appview.example/' })
const CID = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
const BLOB = 'bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku'
const T = '2024-01-01T00:00:00.000Z'
const [A, B, C] = ['did:plc:aaaaaaaaaaaaaaaaaaaaaaaa', 'did:plc:bbbbbbbbbbbbbbbbbbbbbbbb', 'did:plc:cccccccccccccccccccccccc']
const uri = (did: string, rkey: string) => `at://${did}/app.bsky.feed.post/${rkey}`

function state(viewer: string | null = null): HydrationState {
  const s = new HydrationState(viewer)
  for (const [did, handle] of [[A, 'a.test'], [B, 'b.test'], [C, 'c.test']] as const) {
    s.actors.set(did, {
      did,
      handle,
      upstreamStatus: null,
      indexedAt: T,
      profile: {
        uri: `at://${did}/app.bsky.actor.profile/self`,
        cid: CID,
        record: {},
        displayName: handle.toUpperCase(),
        description: null,
        avatarCid: BLOB,
        bannerCid: null,
        pinnedPostUri: null,
        pinnedPostCid: null,
        createdAt: T,
        indexedAt: T,
      },
    })
    if (viewer) s.actorViewers.set(did, {})
  }
  return s
}

function addPost(s: HydrationState, did: string, rkey: string, record: Record<string, unknown>, extra: Partial<PostInfo> = {}): PostInfo {
  const p: PostInfo = {
    uri: uri(did, rkey),
    cid: CID,
    creator: did,
    record: { $type: 'app.bsky.feed.post', text: rkey, createdAt: T, ...record },
    indexedAt: T,
    sortAt: extra.sortAt ?? T,
    replyRoot: null,
    replyParent: null,
    quoteUri: null,
    violatesThreadGate: false,
    violatesEmbeddingRules: false,
    ...extra,
  }
  s.posts.set(p.uri, p)
  s.recordAggs.set(p.uri, { likes: 1, reposts: 2, replies: 3, quotes: 4 })
  return p
}

function valid(def: string, value: unknown) {
  const res = lexicons.validate(def, value)
  if (!res.success) throw res.error
}

describe('post views', () => {
  it('a post with counts, image URLs on the AppView, and no viewer state when anonymous', () => {
    const s = state()
    addPost(s, A, 'p1', { embed: { $type: 'app.bsky.embed.images', images: [{ image: { $type: 'blob', ref: { $link: BLOB }, mimeType: 'image/png', size: 1 }, alt: 'x' }] } })
    const v = views.post(s, uri(A, 'p1'))!
    expect(v.likeCount).toBe(1)
    expect(v.quoteCount).toBe(4)
    expect(v.viewer).toBeUndefined()
    expect(v.author.avatar).toBe(`https://appview.example/img/avatar/plain/${A}/${BLOB}@jpeg`)
    expect((v.embed as { images: { thumb: string }[] }).images[0]!.thumb).toBe(`https://appview.example/img/feed_thumbnail/plain/${A}/${BLOB}@jpeg`)
    valid('app.bsky.feed.defs#postView', v)
    expect(() => valid('app.bsky.feed.defs#postView', { ...v, likeCount: 'many' })).toThrow()
  })

  it('quotes: record, not found, blocked, detached, and media + record', () => {
    const s = state(C)
    addPost(s, A, 'q', {})
    addPost(s, B, 'r1', { embed: { $type: 'app.bsky.embed.record', record: { uri: uri(A, 'q'), cid: CID } } })
    addPost(s, B, 'r2', { embed: { $type: 'app.bsky.embed.record', record: { uri: uri(A, 'gone'), cid: CID } } })
    addPost(s, B, 'r3', {
      embed: {
        $type: 'app.bsky.embed.recordWithMedia',
        record: { record: { uri: uri(A, 'q'), cid: CID } },
        media: { $type: 'app.bsky.embed.external', external: { uri: 'https://x.example', title: 't', description: 'd' } },
      },
    })
    const rec = (u: string) => (views.post(s, u)!.embed as { record: { $type: string } }).record
    expect(rec(uri(B, 'r1')).$type).toBe('app.bsky.embed.record#viewRecord')
    expect(rec(uri(B, 'r2')).$type).toBe('app.bsky.embed.record#viewNotFound')
    const rwm = views.post(s, uri(B, 'r3'))!.embed as { $type: string; record: { record: { $type: string } }; media: { $type: string } }
    expect(rwm.$type).toBe('app.bsky.embed.recordWithMedia#view')
    expect(rwm.record.record.$type).toBe('app.bsky.embed.record#viewRecord')
    expect(rwm.media.$type).toBe('app.bsky.embed.external#view')
    valid('app.bsky.feed.defs#postView', views.post(s, uri(B, 'r3')))

    // the viewer blocks the quoted author
    s.actorViewers.set(A, { blocking: `at://${C}/app.bsky.graph.block/x` })
    expect(rec(uri(B, 'r1')).$type).toBe('app.bsky.embed.record#viewBlocked')
    // a block between the quoting and the quoted author
    s.actorViewers.set(A, {})
    s.blockEdges.add(`${A} ${B}`)
    expect(rec(uri(B, 'r1')).$type).toBe('app.bsky.embed.record#viewBlocked')
    s.blockEdges.clear()
    // the quoted author detached the quote
    s.postgates.set(uri(A, 'q'), { uri: `at://${A}/app.bsky.feed.postgate/q`, cid: CID, record: { detachedEmbeddingUris: [uri(B, 'r1')] } })
    expect(rec(uri(B, 'r1')).$type).toBe('app.bsky.embed.record#viewDetached')
    valid('app.bsky.feed.defs#postView', views.post(s, uri(B, 'r1')))
  })

  it('inactive authors and viewer blocks', () => {
    const s = state(C)
    addPost(s, A, 'p', {})
    s.actors.get(A)!.upstreamStatus = 'deactivated'
    expect(views.post(s, uri(A, 'p'))).toBeUndefined()
    expect(views.maybePost(s, uri(A, 'p')).$type).toBe('app.bsky.feed.defs#notFoundPost')
    s.actors.get(A)!.upstreamStatus = null
    s.actorViewers.set(A, { blockedBy: true, following: 'at://x/app.bsky.graph.follow/y' })
    const blocked = views.maybePost(s, uri(A, 'p'))
    expect(blocked.$type).toBe('app.bsky.feed.defs#blockedPost')
    // following is not shown across a block
    expect(views.profileBasic(s, A)!.viewer).toEqual({ muted: false, blockedBy: true })
  })

  it('a repost in a feed carries its reason; a missing reposter drops the item', () => {
    const s = state(C)
    addPost(s, A, 'p', {})
    s.reposts.set(`at://${B}/app.bsky.feed.repost/r`, { uri: `at://${B}/app.bsky.feed.repost/r`, cid: CID, creator: B, subject: uri(A, 'p'), indexedAt: T, sortAt: T })
    const item = views.feedViewPost(s, { postUri: uri(A, 'p'), repostUri: `at://${B}/app.bsky.feed.repost/r` })!
    expect(item.reason).toMatchObject({ $type: 'app.bsky.feed.defs#reasonRepost', by: { did: B } })
    valid('app.bsky.feed.defs#feedViewPost', item)
    s.actors.get(B)!.upstreamStatus = 'takendown'
    expect(views.feedViewPost(s, { postUri: uri(A, 'p'), repostUri: `at://${B}/app.bsky.feed.repost/r` })).toBeUndefined()
  })
})

describe('threads', () => {
  function thread(s: HydrationState) {
    const root = addPost(s, A, 'root', {})
    const ref = { uri: root.uri, cid: CID }
    const reply = (did: string, rkey: string, sortAt: string, parent = root) =>
      addPost(s, did, rkey, { reply: { root: ref, parent: { uri: parent.uri, cid: CID } } }, { replyRoot: root.uri, replyParent: parent.uri, sortAt })
    const r1 = reply(B, 'r1', '2024-01-01T00:00:01.000Z')
    const r2 = reply(A, 'r2', '2024-01-01T00:00:02.000Z')
    const r3 = reply(C, 'r3', '2024-01-01T00:00:03.000Z', r1)
    const children = new Map([
      [root.uri, [r1.uri, r2.uri]],
      [r1.uri, [r3.uri]],
    ])
    return { root, r1, r2, r3, children }
  }
  const replyUris = (n: ThreadNode | undefined) =>
    ((n as { replies?: ThreadNode[] }).replies ?? []).map((r) => { const x = r as { post?: { uri: string }; uri?: string }; return x.post?.uri ?? x.uri })

  it('the root author\'s replies come first; depth limits the tree; parents are walked up', () => {
    const s = state()
    const { root, r1, r2, r3, children } = thread(s)
    const t = threadView(views, s, root.uri, children, { depth: 6, parentHeight: 80 })
    expect(replyUris(t)).toEqual([r2.uri, r1.uri])
    const r1Node = (t as { replies: ThreadNode[] }).replies[1]
    expect(replyUris(r1Node)).toEqual([r3.uri])
    valid('app.bsky.feed.defs#threadViewPost', t)
    const shallow = threadView(views, s, root.uri, children, { depth: 1, parentHeight: 80 })
    expect(((shallow as { replies: { replies?: unknown }[] }).replies[1]!).replies).toBeUndefined()
    const fromLeaf = threadView(views, s, r3.uri, children, { depth: 6, parentHeight: 80 }) as { parent: { post: { uri: string }; parent: { post: { uri: string } } } }
    expect(fromLeaf.parent.post.uri).toBe(r1.uri)
    expect(fromLeaf.parent.parent.post.uri).toBe(root.uri)
    const oneUp = threadView(views, s, r3.uri, children, { depth: 6, parentHeight: 1 }) as { parent: { parent?: unknown } }
    expect(oneUp.parent.parent).toBeUndefined()
  })

  it('blocks, hidden replies and threadgate violations', () => {
    const s = state(C)
    const { root, r1, r2, r3, children } = thread(s)
    // viewer blocks B: B's reply (and what hangs under it) is left out
    s.actorViewers.set(B, { blocking: `at://${C}/app.bsky.graph.block/b` })
    expect(replyUris(threadView(views, s, root.uri, children, { depth: 6, parentHeight: 80 }))).toEqual([r2.uri])
    // seen from below, the blocked parent is a blockedPost
    const up = threadView(views, s, r3.uri, children, { depth: 6, parentHeight: 80 }) as { parent: { $type: string } }
    expect(up.parent.$type).toBe('app.bsky.feed.defs#blockedPost')
    valid('app.bsky.feed.defs#threadViewPost', up)
    s.actorViewers.set(B, {})
    // the root author hides r1; r2 breaks the threadgate (flag set at index time)
    s.threadgates.set(root.uri, { uri: `at://${A}/app.bsky.feed.threadgate/root`, cid: CID, record: { hiddenReplies: [r1.uri] } })
    s.posts.get(r2.uri)!.violatesThreadGate = true
    expect(replyUris(threadView(views, s, root.uri, children, { depth: 6, parentHeight: 80 }))).toEqual([])
    // the anchor's author is blocked: the whole thread is a blockedPost
    s.actorViewers.set(A, { blockedBy: true })
    expect(threadView(views, s, root.uri, children, { depth: 6, parentHeight: 80 })!.$type).toBe('app.bsky.feed.defs#blockedPost')
    expect(threadView(views, s, uri(A, 'missing'), children, { depth: 6, parentHeight: 80 })).toBeUndefined()
  })
})
