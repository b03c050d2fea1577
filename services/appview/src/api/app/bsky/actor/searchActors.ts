import { sql } from 'kysely'
import { searchTokens } from '../../../../indexer/search.js'
import { presentProfiles } from '../../../feed-util.js'
import { decodeOffset, encodeOffset, json, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.actor.searchActors', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const q = (params.q ?? params.term ?? '') as string
      const limit = params.limit as number
      const offset = decodeOffset(params.cursor as string | undefined)
      const tokens = searchTokens(q)
      if (tokens.length === 0) return json({ actors: [] })
      const rows = await ctx.db
        .selectFrom('actor')
        .leftJoin('profile_agg', 'profile_agg.did', 'actor.did')
        .select('actor.did')
        .where(ctx.indexer.search.actorMatches(tokens, false))
        .where('actor.upstreamStatus', 'is', null)
        .orderBy(sql`coalesce(${sql.ref('profile_agg.followersCount')}, 0)`, 'desc')
        .orderBy('actor.did', 'asc')
        .limit(limit)
        .offset(offset)
        .execute()
      const { state, dids } = await presentProfiles(ctx, viewer, rows.map((r) => r.did))
      const actors = dids.map((d) => ctx.views.profile(state, d)).filter((p) => p !== undefined)
      return json({ actors, cursor: rows.length === limit ? encodeOffset(offset + limit) : undefined })
    },
  })
}
export default register
