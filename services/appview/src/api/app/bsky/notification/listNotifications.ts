import type { AppBskyNotificationListNotifications } from '@atproto/api'
import type { AppContext } from '../../../../context.js'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { actorInvisible, viewerMutes } from '../../../../views/rules.js'
import { decodeCursor, json, nextCursor, viewerOf, type KeysetCursor, type Register } from '../../../util.js'
import { fixedRows, type Arg } from '../../../../hydration/sql.js'

export async function lastSeen(ctx: AppContext, did: string): Promise<string | null> {
  const [row] = await fixedRows<{ lastSeenNotifs: string | null }>(ctx.db, 'SELECT "lastSeenNotifs" AS "lastSeenNotifs" FROM actor_state WHERE did = ?', [did])
  return row?.lastSeenNotifs ?? null
}

interface NotificationRow {
  recordUri: string
  recordCid: string
  author: string
  reason: string
  reasonSubject: string | null
  sortAt: string
  indexedAt: string
  json: string
}

/** The viewer's notifications (of `reasons`, if any) after the cursor, newest first. */
function page(ctx: AppContext, viewer: string, reasons: string[], cursor: KeysetCursor | undefined, limit: number): Promise<NotificationRow[]> {
  const args: Arg[] = [viewer]
  let where = ''
  if (reasons.length > 0) {
    where += ' AND n.reason IN ?L'
    args.push({ list: reasons })
  }
  if (cursor) {
    where += ' AND (n."sortAt" < ? OR (n."sortAt" = ? AND n."recordUri" < ?))'
    args.push(cursor.primary, cursor.primary, cursor.secondary)
  }
  args.push(limit)
  return fixedRows<NotificationRow>(
    ctx.db,
    `SELECT n."recordUri" AS "recordUri", n."recordCid" AS "recordCid", n.author AS author, n.reason AS reason,
       n."reasonSubject" AS "reasonSubject", n."sortAt" AS "sortAt", n."indexedAt" AS "indexedAt", r.json AS json
     FROM notification n JOIN record r ON r.uri = n."recordUri"
     WHERE n.did = ?${where}
     ORDER BY n."sortAt" DESC, n."recordUri" DESC LIMIT ?`,
    args,
  )
}

const register: Register = (server, ctx) => {
  server.method('app.bsky.notification.listNotifications', {
    auth: ctx.auth.required,
    handler: async ({ params, auth }) => {
      const viewer = viewerOf(auth)!
      const limit = params.limit as number
      const cursor = decodeCursor(params.cursor as string | undefined)
      const reasons = (params.reasons as string[] | undefined) ?? []
      const [rows, seenAt] = await Promise.all([page(ctx, viewer, reasons, cursor, limit), lastSeen(ctx, viewer)])
      const state = new HydrationState(viewer)
      const [, takenDown] = await Promise.all([
        ctx.hydrator.actors(state, rows.map((r) => r.author), { counts: false }),
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
