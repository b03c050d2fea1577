import { sql } from 'kysely'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'
import { feedItemOf, presentFeed } from '../../../feed-util.js'

/**
 * The Following timeline: posts and reposts of the accounts the viewer follows, and the viewer's own.
 *
 * Bounded at any number of follows: first, one index seek per followed account finds its newest item
 * (before the cursor); the `limit`-th newest of those is a lower bound of the page (that many accounts
 * each have an item at or after it), so the page is read from the (originatorDid, sortAt) index between
 * that bound and the cursor only, instead of sorting every item of every followed account. With fewer
 * accounts than `limit` that have items, each one's newest `limit` items are read and merged.
 */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getTimeline', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      // per account (followed, and the viewer): its newest item's sortAt before the cursor
      const before = cursor
        ? sql`AND (fi."sortAt" < ${cursor.primary} OR (fi."sortAt" = ${cursor.primary} AND fi.uri < ${cursor.secondary}))`
        : sql``
      const newest = await sql<{ did: string; latest: string | null }>`
        SELECT a.did AS did,
          (SELECT fi."sortAt" FROM feed_item fi WHERE fi."originatorDid" = a.did ${before} ORDER BY fi."sortAt" DESC LIMIT 1) AS latest
        FROM (SELECT ${viewer} AS did UNION SELECT f."subjectDid" AS did FROM follow f WHERE f.creator = ${viewer}) a`.execute(ctx.db)
      const active = newest.rows.filter((r) => r.latest !== null)
      const page = ctx.db
        .selectFrom('feed_item')
        .select(['feed_item.uri', 'feed_item.type', 'feed_item.postUri', 'feed_item.originatorDid', 'feed_item.sortAt'])
        .where((eb) => beforeCursor(eb, cursor, 'feed_item.sortAt', 'feed_item.uri'))
        .orderBy('feed_item.sortAt', 'desc')
        .orderBy('feed_item.uri', 'desc')
        .limit(limit)
      let rows: { uri: string; type: string; postUri: string; originatorDid: string; sortAt: string }[]
      if (active.length >= limit) {
        const bound = active.map((r) => r.latest!).sort().reverse()[limit - 1]!
        // (the accounts as a subquery, not a list of up to thousands of bound DIDs)
        rows = await page
          .where(sql<boolean>`${sql.ref('feed_item.originatorDid')} IN (SELECT f."subjectDid" FROM follow f WHERE f.creator = ${viewer} UNION SELECT ${viewer})`)
          .where('feed_item.sortAt', '>=', bound)
          .execute()
      } else {
        // few accounts: the newest `limit` of each, merged
        const lists = await Promise.all(active.map((r) => page.where('feed_item.originatorDid', '=', r.did).execute()))
        rows = lists
          .flat()
          .sort((a, b) => (a.sortAt === b.sortAt ? (a.uri < b.uri ? 1 : a.uri > b.uri ? -1 : 0) : a.sortAt < b.sortAt ? 1 : -1))
          .slice(0, limit)
      }
      const feed = await presentFeed(ctx, viewer, rows.map(feedItemOf), { applyMutes: true, followedRepliesOnly: true })
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
