import type { AppBskyNotificationListNotifications } from '@atproto/api'
import type { AppContext } from '../../../../context.js'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { actorInvisible, viewerMutes } from '../../../../views/rules.js'
import { beforeCursor, decodeCursor, json, nextCursor, viewerOf, type Register } from '../../../util.js'

export async function lastSeen(ctx: AppContext, did: string): Promise<string | null> {
  const row = await ctx.db.selectFrom('actor_state').select('lastSeenNotifs').where('did', '=', did).executeTakeFirst()
  return row?.lastSeenNotifs ?? null
}

const register: Register = (server, ctx) => {
  server.method('app.bsky.notification.listNotifications', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const reasons = (params.reasons as string[] | undefined) ?? []
      let qb = ctx.db
        .selectFrom('notification')
        .innerJoin('record', 'record.uri', 'notification.recordUri')
        .select([
          'notification.recordUri',
          'notification.recordCid',
          'notification.author',
          'notification.reason',
          'notification.reasonSubject',
          'notification.sortAt',
          'notification.indexedAt',
          'record.json',
        ])
        .where('notification.did', '=', viewer)
      if (reasons.length > 0) qb = qb.where('notification.reason', 'in', reasons)
      const [rows, seenAt] = await Promise.all([
        qb
          .where((eb) => beforeCursor(eb, cursor, 'notification.sortAt', 'notification.recordUri'))
          .orderBy('notification.sortAt', 'desc')
          .orderBy('notification.recordUri', 'desc')
          .limit(limit)
          .execute(),
        lastSeen(ctx, viewer),
      ])
      const state = new HydrationState(viewer)
      const [, takenDown] = await Promise.all([
        ctx.hydrator.actors(state, rows.map((r) => r.author)),
        // the labelers' labels on the notifying records (as every view carries them)
        ctx.hydrator.recordLabels(state, rows.map((r) => r.recordUri)),
      ])
      const notifications: AppBskyNotificationListNotifications.Notification[] = []
      for (const r of rows) {
        if (takenDown.has(r.recordUri) || actorInvisible(state, r.author) || viewerMutes(state, r.author)) continue
        const author = ctx.views.profile(state, r.author)
        if (!author) continue
        const record = JSON.parse(r.json) as Record<string, unknown>
        const n: AppBskyNotificationListNotifications.Notification = {
          uri: r.recordUri,
          cid: r.recordCid,
          author,
          reason: r.reason,
          record,
          isRead: seenAt !== null && r.sortAt <= seenAt,
          indexedAt: r.indexedAt,
          labels: ctx.views.labelsOf(state, r.recordUri, { cid: r.recordCid, creator: r.author, record, cts: r.indexedAt }),
        }
        if (r.reasonSubject) n.reasonSubject = r.reasonSubject
        notifications.push(n)
      }
      const out: AppBskyNotificationListNotifications.OutputSchema = {
        notifications,
        cursor: nextCursor(rows, limit, (r) => [r.sortAt, r.recordUri]),
        priority: false,
      }
      if (seenAt) out.seenAt = seenAt
      return json(out)
    },
  })
}
export default register
