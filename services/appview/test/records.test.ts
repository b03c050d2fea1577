/** Pure record → rows functions. */
import { describe, expect, it } from 'vitest'
import { mentionedDids, normalizeDate, planRecord, postEmbedInfo, sortAtOf, type RecordInput } from '../src/indexer/records.js'

const ALICE = 'did:plc:alice00000000000000000000'
const BOB = 'did:plc:bob0000000000000000000000'
const CAROL = 'did:plc:carol00000000000000000000'
const CID = 'bafyreie5737gdxlw5i64vzichcalba3z2v5n6icifvx5xytvske7mr3hpm'
const INDEXED = '2024-06-01T12:00:00.000Z'

function input(did: string, collection: string, rkey: string, record: Record<string, unknown>): RecordInput {
  return { uri: `at://${did}/${collection}/${rkey}`, did, collection, rkey, cid: CID, record: { $type: collection, ...record }, indexedAt: INDEXED }
}

const postUri = (did: string, rkey: string) => `at://${did}/app.bsky.feed.post/${rkey}`

describe('post', () => {
  it('a reply: row, counters, feed item, notifications to parent and root authors', () => {
    const plan = planRecord(
      input(CAROL, 'app.bsky.feed.post', '3kc', {
        text: 'replying',
        createdAt: '2024-06-01T11:00:00Z',
        reply: { root: { uri: postUri(ALICE, '3ka'), cid: CID }, parent: { uri: postUri(BOB, '3kb'), cid: CID } },
        langs: ['en'],
      }),
    )!
    expect(plan.main.table).toBe('post')
    const row = plan.main.row as { replyRoot: string; replyParent: string; sortAt: string; createdAt: string; langs: string; text: string }
    expect(row.replyRoot).toBe(postUri(ALICE, '3ka'))
    expect(row.replyParent).toBe(postUri(BOB, '3kb'))
    expect(row.createdAt).toBe('2024-06-01T11:00:00.000Z')
    expect(row.sortAt).toBe('2024-06-01T11:00:00.000Z')
    expect(row.langs).toBe('["en"]')
    expect(plan.postText).toBe('replying')
    expect(plan.aggs).toEqual([
      { table: 'profile_agg', key: CAROL, column: 'postsCount' },
      { table: 'record_agg', key: postUri(BOB, '3kb'), column: 'replyCount' },
    ])
    expect(plan.feedItem).toMatchObject({ type: 'post', postUri: postUri(CAROL, '3kc'), originatorDid: CAROL })
    expect(plan.notifications.map((n) => [n.did, n.reason, n.reasonSubject])).toEqual([
      [BOB, 'reply', postUri(BOB, '3kb')],
      [ALICE, 'reply', postUri(BOB, '3kb')],
    ])
  })

  it('a quote with a mention of the quoted author notifies once (mention first), and never the author', () => {
    const plan = planRecord(
      input(BOB, 'app.bsky.feed.post', '3kd', {
        text: 'hey @alice look',
        createdAt: '2030-01-01T00:00:00Z',
        facets: [
          { index: { byteStart: 4, byteEnd: 10 }, features: [{ $type: 'app.bsky.richtext.facet#mention', did: ALICE }] },
          { index: { byteStart: 0, byteEnd: 3 }, features: [{ $type: 'app.bsky.richtext.facet#mention', did: BOB }] },
        ],
        embed: { $type: 'app.bsky.embed.record', record: { uri: postUri(ALICE, '3ka'), cid: CID } },
      }),
    )!
    expect(plan.notifications.map((n) => [n.did, n.reason])).toEqual([[ALICE, 'mention']])
    expect(plan.aggs).toContainEqual({ table: 'record_agg', key: postUri(ALICE, '3ka'), column: 'quoteCount' })
    // a createdAt in the future sorts at the time it was seen
    expect((plan.main.row as { sortAt: string }).sortAt).toBe(INDEXED)
  })

  it('embeds: quote targets and media flags', () => {
    expect(postEmbedInfo({ $type: 'app.bsky.embed.images', images: [] })).toEqual({ embedType: 'images', quote: null, hasMedia: true, hasVideo: false })
    expect(postEmbedInfo({ $type: 'app.bsky.embed.video', video: {} })).toMatchObject({ embedType: 'video', hasMedia: true, hasVideo: true })
    expect(postEmbedInfo({ $type: 'app.bsky.embed.external', external: {} })).toMatchObject({ embedType: 'external', hasMedia: false })
    expect(
      postEmbedInfo({
        $type: 'app.bsky.embed.recordWithMedia',
        record: { record: { uri: postUri(ALICE, '3ka'), cid: CID } },
        media: { $type: 'app.bsky.embed.video', video: {} },
      }),
    ).toEqual({ embedType: 'recordWithMedia', quote: { uri: postUri(ALICE, '3ka'), cid: CID }, hasMedia: true, hasVideo: true })
    expect(postEmbedInfo(undefined)).toEqual({ embedType: null, quote: null, hasMedia: false, hasVideo: false })
    // quoting a feed generator is an embed, not a quote of a post
    const plan = planRecord(
      input(BOB, 'app.bsky.feed.post', '3ke', {
        text: 'try this feed',
        createdAt: '2024-01-01T00:00:00Z',
        embed: { $type: 'app.bsky.embed.record', record: { uri: `at://${ALICE}/app.bsky.feed.generator/cats`, cid: CID } },
      }),
    )!
    expect((plan.main.row as { quoteUri: string }).quoteUri).toBe(`at://${ALICE}/app.bsky.feed.generator/cats`)
    expect(plan.aggs.some((a) => a.column === 'quoteCount')).toBe(false)
    expect(plan.notifications).toEqual([])
  })

  it('unusable posts are not planned', () => {
    expect(planRecord(input(BOB, 'app.bsky.feed.post', '3kf', { createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
    expect(planRecord(input(BOB, 'app.bsky.feed.post', '3kf', { text: 'x', reply: { root: { uri: 'nope', cid: CID } } }))).toBeNull()
  })

  it('mentions are read from facets only', () => {
    expect(mentionedDids({ text: '@x', facets: [{ features: [{ $type: 'app.bsky.richtext.facet#link', uri: 'https://x' }] }] })).toEqual([])
    expect(mentionedDids({ facets: [{ features: [{ $type: 'app.bsky.richtext.facet#mention', did: ALICE }, { $type: 'app.bsky.richtext.facet#mention', did: ALICE }] }] })).toEqual([ALICE])
  })
})

describe('interactions', () => {
  it('like: counter and notification; no self-notification', () => {
    const plan = planRecord(input(BOB, 'app.bsky.feed.like', '3kg', { subject: { uri: postUri(ALICE, '3ka'), cid: CID }, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(plan.main.table).toBe('like')
    expect(plan.aggs).toEqual([{ table: 'record_agg', key: postUri(ALICE, '3ka'), column: 'likeCount' }])
    expect(plan.notifications.map((n) => [n.did, n.reason, n.reasonSubject])).toEqual([[ALICE, 'like', postUri(ALICE, '3ka')]])
    expect(plan.feedItem).toBeUndefined()
    const self = planRecord(input(ALICE, 'app.bsky.feed.like', '3kh', { subject: { uri: postUri(ALICE, '3ka'), cid: CID }, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(self.notifications).toEqual([])
    expect(planRecord(input(BOB, 'app.bsky.feed.like', '3ki', { subject: { uri: postUri(ALICE, '3ka') } }))).toBeNull()
  })

  it('repost: feed item of the reposter, counter, notification; only posts can be reposted', () => {
    const plan = planRecord(input(BOB, 'app.bsky.feed.repost', '3kj', { subject: { uri: postUri(ALICE, '3ka'), cid: CID }, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(plan.feedItem).toMatchObject({ type: 'repost', postUri: postUri(ALICE, '3ka'), originatorDid: BOB, uri: `at://${BOB}/app.bsky.feed.repost/3kj` })
    expect(plan.aggs).toEqual([{ table: 'record_agg', key: postUri(ALICE, '3ka'), column: 'repostCount' }])
    expect(plan.notifications.map((n) => n.reason)).toEqual(['repost'])
    expect(planRecord(input(BOB, 'app.bsky.feed.repost', '3kk', { subject: { uri: `at://${ALICE}/app.bsky.graph.list/l`, cid: CID }, createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
  })

  it('follow moves both counters and notifies; block does neither', () => {
    const f = planRecord(input(BOB, 'app.bsky.graph.follow', '3kl', { subject: ALICE, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(f.aggs).toEqual([
      { table: 'profile_agg', key: BOB, column: 'followsCount' },
      { table: 'profile_agg', key: ALICE, column: 'followersCount' },
    ])
    expect(f.notifications.map((n) => [n.did, n.reason, n.author])).toEqual([[ALICE, 'follow', BOB]])
    const b = planRecord(input(BOB, 'app.bsky.graph.block', '3km', { subject: ALICE, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(b.main.table).toBe('block')
    expect(b.aggs).toEqual([])
    expect(b.notifications).toEqual([])
    expect(planRecord(input(BOB, 'app.bsky.graph.follow', '3kn', { subject: 'alice.test', createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
  })
})

describe('graph and other records', () => {
  it('profile only at rkey self, with blob CIDs and pinned post', () => {
    const plan = planRecord(
      input(ALICE, 'app.bsky.actor.profile', 'self', {
        displayName: 'Alice',
        avatar: { $type: 'blob', ref: { $link: CID }, mimeType: 'image/png', size: 3 },
        banner: { cid: CID, mimeType: 'image/jpeg' },
        pinnedPost: { uri: postUri(ALICE, '3ka'), cid: CID },
      }),
    )!
    expect(plan.main.row).toMatchObject({ displayName: 'Alice', avatarCid: CID, bannerCid: CID, pinnedPostUri: postUri(ALICE, '3ka') })
    expect(planRecord(input(ALICE, 'app.bsky.actor.profile', 'other', { displayName: 'x' }))).toBeNull()
  })

  it('list items count toward their list, and only the list owner can add to a list', () => {
    const list = `at://${ALICE}/app.bsky.graph.list/3kl`
    const item = planRecord(input(ALICE, 'app.bsky.graph.listitem', '3ko', { list, subject: BOB, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(item.aggs).toEqual([{ table: 'list_agg', key: list, column: 'itemCount' }])
    expect(planRecord(input(BOB, 'app.bsky.graph.listitem', '3kp', { list, subject: CAROL, createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
  })

  it('gates must sit at their post\'s rkey in the author\'s repo', () => {
    const ok = planRecord(input(ALICE, 'app.bsky.feed.threadgate', '3ka', { post: postUri(ALICE, '3ka'), allow: [], createdAt: '2024-01-01T00:00:00Z' }))!
    expect(ok.main.table).toBe('threadgate')
    expect(planRecord(input(ALICE, 'app.bsky.feed.threadgate', '3kb', { post: postUri(ALICE, '3ka'), createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
    expect(planRecord(input(BOB, 'app.bsky.feed.postgate', '3ka', { post: postUri(ALICE, '3ka'), createdAt: '2024-01-01T00:00:00Z' }))).toBeNull()
  })

  it('feed generators, starter packs and lists count toward their creator', () => {
    const g = planRecord(input(ALICE, 'app.bsky.feed.generator', 'cats', { did: 'did:web:feeds.example', displayName: 'Cats', createdAt: '2024-01-01T00:00:00Z' }))!
    expect(g.aggs).toEqual([{ table: 'profile_agg', key: ALICE, column: 'feedgensCount' }])
    const s = planRecord(input(ALICE, 'app.bsky.graph.starterpack', '3kq', { name: 'Start', list: `at://${ALICE}/app.bsky.graph.list/3kl`, createdAt: '2024-01-01T00:00:00Z' }))!
    expect(s.aggs).toEqual([{ table: 'profile_agg', key: ALICE, column: 'starterPacksCount' }])
    const l = planRecord(input(ALICE, 'app.bsky.graph.list', '3kl', { name: 'L', purpose: 'app.bsky.graph.defs#curatelist', createdAt: '2024-01-01T00:00:00Z' }))!
    expect(l.aggs).toEqual([{ table: 'profile_agg', key: ALICE, column: 'listsCount' }])
    expect(planRecord(input(ALICE, 'app.bsky.feed.generator', 'x', { displayName: 'no did' }))).toBeNull()
    expect(planRecord(input(ALICE, 'com.example.thing', 'x', {}))).toBeNull()
  })

  it('dates', () => {
    expect(normalizeDate('2024-01-01T00:00:00+02:00')).toBe('2023-12-31T22:00:00.000Z')
    expect(normalizeDate('yesterday')).toBeUndefined()
    expect(normalizeDate(42)).toBeUndefined()
    expect(sortAtOf('2024-01-01T00:00:00.000Z', INDEXED)).toBe('2024-01-01T00:00:00.000Z')
    expect(sortAtOf(undefined, INDEXED)).toBe(INDEXED)
  })
})
