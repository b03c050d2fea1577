import type { LabelerContext } from '../../../../context.js'

interface ReportInput {
  reasonType: string
  reason?: string
  subject: { $type?: string; did?: string; uri?: string; cid?: string }
}

/**
 * com.atproto.moderation.createReport: a report about an account or a record, sent by a user's PDS on
 * their behalf (service auth: a JWT from the reporter, audience this labeler). Stored for the admin API.
 */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.atproto.moderation.createReport', {
    auth: ctx.auth.service,
    handler: async ({ input, auth }) => {
      const body = input!.body as ReportInput
      const reportedBy = auth.credentials.iss
      const subject = body.subject
      const subjectUri = subject.uri ?? subject.did ?? ''
      const createdAt = new Date().toISOString()
      const row = await ctx.db
        .insertInto('report')
        .values({
          reason_type: body.reasonType,
          reason: body.reason ?? null,
          subject: JSON.stringify(subject),
          subject_uri: subjectUri,
          reported_by: reportedBy,
          created_at: createdAt,
        })
        .returning('id')
        .executeTakeFirstOrThrow()
      ctx.log.info({ id: row.id, reportedBy, subject: subjectUri, reasonType: body.reasonType }, 'report received')
      const out: Record<string, unknown> = { id: row.id, reasonType: body.reasonType, subject, reportedBy, createdAt }
      if (body.reason !== undefined) out.reason = body.reason
      return { encoding: 'application/json', body: out }
    },
  })
}
