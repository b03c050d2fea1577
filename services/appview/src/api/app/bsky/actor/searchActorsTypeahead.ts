import { sql } from 'kysely'
import { searchTokens } from '../../../../indexer/search.js'
import { presentProfiles } from '../../../feed-util.js'
import { json, viewerOf, type Register } from '../../../util.js'

const register: Register = (server, ctx) => {
  server.method('app.bsky.actor.searchActorsTypeahead', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const q = ((params.q ?? params.term ?? '') as string).trim().toLowerCase().replace(/^@/, '')
      const limit = params.limit as number
      const tokens = searchTokens(q)
      if (tokens.length === 0) return json({ actors: [] })
      const handlePrefix = q.replace(/[%_\\]/g, '')
      const rows = await ctx.db
        .selectFrom('actor')
        .leftJoin('profile_agg', 'profile_agg.did', 'actor.did')
        .select('actor.did')
        .where((eb) => eb.or([eb('actor.handle', 'like', `${handlePrefix}%`), ctx.indexer.search.actorMatches(tokens, true)]))
        .where('actor.upstreamStatus', 'is', null)
        .orderBy(sql`coalesce(${sql.ref('profile_agg.followersCount')}, 0)`, 'desc')
        .orderBy('actor.did', 'asc')
        .limit(limit)
        .execute()
      const { state, dids } = await presentProfiles(ctx, viewer, rows.map((r) => r.did))
      const actors = dids.map((d) => ctx.views.profileBasic(state, d)).filter((p) => p !== undefined)
      return json({ actors })
    },
  })
}
export default register
