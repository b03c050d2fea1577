import { normalizeDate } from '../../../../indexer/records.js'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { actorInvisible, viewerMutes } from '../../../../views/rules.js'
import { json, viewerOf, type Register } from '../../../util.js'
import { lastSeen } from './listNotifications.js'

const MAX_COUNTED = 10_000

const register: Register = (server, ctx) => {
  server.method('app.bsky.notification.getUnreadCount', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const seenAt = normalizeDate(params.seenAt) ?? (await lastSeen(ctx, viewer))
      let qb = ctx.db
        .selectFrom('notification')
        .innerJoin('record', 'record.uri', 'notification.recordUri')
        .select(['notification.author'])
        .where('notification.did', '=', viewer)
      if (seenAt) qb = qb.where('notification.sortAt', '>', seenAt)
      const rows = await qb.limit(MAX_COUNTED).execute()
      const state = new HydrationState(viewer)
      await ctx.hydrator.actors(state, rows.map((r) => r.author))
      const count = rows.filter((r) => !actorInvisible(state, r.author) && !viewerMutes(state, r.author)).length
      return json({ count })
    },
  })
}
export default register
