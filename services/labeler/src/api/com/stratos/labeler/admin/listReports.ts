import type { LabelerContext } from '../../../../../context.js'
import { seqCursor } from '../../../../util.js'

/** com.stratos.labeler.admin.listReports: the reports received, newest first. */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.stratos.labeler.admin.listReports', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 100
      const before = seqCursor(params.cursor)
      let q = ctx.db.selectFrom('report').selectAll().orderBy('id', 'desc').limit(limit)
      if (before !== undefined) q = q.where('id', '<', before)
      const subject = params.subject as string | undefined
      if (subject) q = q.where('subject_uri', '=', subject)
      const rows = await q.execute()
      const reports = rows.map((r) => {
        const out: Record<string, unknown> = {
          id: r.id,
          reasonType: r.reason_type,
          subject: JSON.parse(r.subject),
          reportedBy: r.reported_by,
          createdAt: r.created_at,
        }
        if (r.reason !== null) out.reason = r.reason
        return out
      })
      const body: Record<string, unknown> = { reports }
      if (rows.length === limit) body.cursor = String(rows[rows.length - 1]!.id)
      return { encoding: 'application/json', body }
    },
  })
}
