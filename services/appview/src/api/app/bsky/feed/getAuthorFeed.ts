import { sql } from 'kysely'
import { InvalidRequestError } from '@stratos/core/xrpc'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'
import { feedItemOf, presentFeed } from '../../../feed-util.js'
import { assertActorShown } from '../actor/getProfile.js'
import type { FeedItem } from '../../../../views/views.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getAuthorFeed', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const limit = params.limit as number
      const filter = (params.filter as string | undefined) ?? 'posts_with_replies'
      const cursor = decodeCursor(params.cursor as string | undefined)
      const did = await resolveActor(ctx.db, params.actor as string)
      if (!did) throw new InvalidRequestError('Profile not found')

      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, [did])
      const actor = state.actors.get(did)
      assertActorShown(actor?.upstreamStatus)
      const rel = state.actorViewers.get(did)
      if (viewer && viewer !== did) {
        if (rel?.blocking || rel?.blockingByList) throw new InvalidRequestError('Requester has blocked actor', 'BlockedActor')
        if (rel?.blockedBy || rel?.blockedByList) throw new InvalidRequestError('Requester is blocked by actor', 'BlockedByActor')
      }

      let qb = ctx.db
        .selectFrom('feed_item')
        .innerJoin('post', 'post.uri', 'feed_item.postUri')
        .select(['feed_item.uri', 'feed_item.type', 'feed_item.postUri', 'feed_item.originatorDid', 'feed_item.sortAt'])
        .where('feed_item.originatorDid', '=', did)
      if (filter === 'posts_with_media') {
        qb = qb.where('feed_item.type', '=', 'post').where('post.hasMedia', '=', 1)
      } else if (filter === 'posts_with_video') {
        qb = qb.where('feed_item.type', '=', 'post').where('post.hasVideo', '=', 1)
      } else if (filter === 'posts_no_replies') {
        qb = qb.where((eb) => eb.or([eb('feed_item.type', '=', 'repost'), eb('post.replyParent', 'is', null)]))
      } else if (filter === 'posts_and_author_threads') {
        qb = qb.where((eb) =>
          eb.or([
            eb('feed_item.type', '=', 'repost'),
            eb('post.replyParent', 'is', null),
            // a reply in a thread the author started
            eb('post.replyRoot', 'like', sql<string>`${`at://${did}/`} || '%'`),
          ]),
        )
      }
      const rows = await qb
        .where((eb) => beforeCursor(eb, cursor, 'feed_item.sortAt', 'feed_item.uri'))
        .orderBy('feed_item.sortAt', 'desc')
        .orderBy('feed_item.uri', 'desc')
        .limit(limit)
        .execute()

      const items: FeedItem[] = rows.map(feedItemOf)
      const pinned = actor?.profile?.pinnedPostUri
      if (params.includePins === true && !cursor && pinned && pinned.startsWith(`at://${did}/app.bsky.feed.post/`)) {
        items.unshift({ postUri: pinned, pinned: true })
      }
      const feed = await presentFeed(ctx, viewer, items)
      return json({ feed, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
    },
  })
}
export default register
