import { sql } from 'kysely'
import { presentProfiles } from '../../../feed-util.js'
import { decodeOffset, encodeOffset, json, viewerOf, type Register } from '../../../util.js'

/** Most-followed accounts the viewer does not follow yet. */
const register: Register = (server, ctx) => {
  server.method('app.bsky.actor.getSuggestions', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)
      const limit = params.limit as number
      const offset = decodeOffset(params.cursor as string | undefined)
      let qb = ctx.db
        .selectFrom('actor')
        .innerJoin('profile', 'profile.creator', 'actor.did')
        .leftJoin('profile_agg', 'profile_agg.did', 'actor.did')
        .select('actor.did')
        .where('actor.upstreamStatus', 'is', null)
      if (viewer) {
        qb = qb
          .where('actor.did', '!=', viewer)
          .where((eb) => eb.not(eb.exists(eb.selectFrom('follow').select('follow.uri').where('follow.creator', '=', viewer).whereRef('follow.subjectDid', '=', 'actor.did'))))
      }
      const rows = await qb.orderBy(sql`coalesce(${sql.ref('profile_agg.followersCount')}, 0)`, 'desc').orderBy('actor.did', 'asc').limit(limit).offset(offset).execute()
      const { state, dids } = await presentProfiles(ctx, viewer, rows.map((r) => r.did))
      const actors = dids.map((d) => ctx.views.profile(state, d)).filter((p) => p !== undefined)
      return json({ actors, cursor: rows.length === limit ? encodeOffset(offset + limit) : undefined })
    },
  })
}
export default register
