import type { LabelerContext } from '../../../../../context.js'
import { labelView, seqCursor } from '../../../../util.js'

/** com.stratos.labeler.admin.listLabels: every label issued (negations and expired ones too), by seq. */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.stratos.labeler.admin.listLabels', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const limit = (params.limit as number | undefined) ?? 100
      const uri = params.uri as string | undefined
      const val = params.val as string | undefined
      const found = await ctx.labels.query({
        uriPatterns: uri ? [uri] : undefined,
        vals: val ? [val] : undefined,
        includeInactive: true,
        after: seqCursor(params.cursor),
        limit,
      })
      const body: Record<string, unknown> = { labels: found.map(labelView) }
      if (found.length === limit) body.cursor = String(found[found.length - 1]!.seq)
      return { encoding: 'application/json', body }
    },
  })
}
