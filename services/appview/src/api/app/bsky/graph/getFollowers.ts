import { InvalidRequestError } from '@stratos/core/xrpc'
import { presentProfiles } from '../../../feed-util.js'
import { beforeCursor, decodeCursor, json, nextCursor, resolveActor, viewerOf, type Register } from '../../../util.js'
import { assertActorShown } from '../actor/getProfile.js'

/** getFollowers and getFollows share everything but the direction. */
export function followList(direction: 'followers' | 'follows'): Register {
  const nsid = direction === 'followers' ? 'app.bsky.graph.getFollowers' : 'app.bsky.graph.getFollows'
  return (server, ctx) => {
    server.method(nsid, {
      auth: ctx.auth.optional,
      handler: async ({ params, auth }) => {
        const viewer = viewerOf(auth)
        const limit = params.limit as number
        const cursor = decodeCursor(params.cursor as string | undefined)
        const did = await resolveActor(ctx.db, params.actor as string)
        if (!did) throw new InvalidRequestError('Profile not found')
        const [mine, theirs] = direction === 'followers' ? (['subjectDid', 'creator'] as const) : (['creator', 'subjectDid'] as const)
        const rows = await ctx.db
          .selectFrom('follow')
          .select(['uri', 'sortAt', `${theirs} as other`])
          .where(mine, '=', did)
          .where((eb) => beforeCursor(eb, cursor, 'sortAt', 'uri'))
          .orderBy('sortAt', 'desc')
          .orderBy('uri', 'desc')
          .limit(limit)
          .execute()
        const { state, dids } = await presentProfiles(ctx, viewer, [did, ...rows.map((r) => r.other)])
        assertActorShown(state.actors.get(did)?.upstreamStatus)
        const subject = ctx.views.profile(state, did)
        if (!subject) throw new InvalidRequestError('Profile not found')
        const visible = new Set(dids)
        const profiles = rows
          .filter((r) => visible.has(r.other))
          .map((r) => ctx.views.profile(state, r.other))
          .filter((p) => p !== undefined)
        return json({ subject, [direction]: profiles, cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.uri]) })
      },
    })
  }
}

export default followList('followers')
