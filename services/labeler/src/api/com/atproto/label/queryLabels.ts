import { InvalidRequestError } from '@stratos/core/xrpc'
import type { LabelerContext } from '../../../../context.js'
import { seqCursor } from '../../../util.js'

/**
 * com.atproto.label.queryLabels: the current labels (negated and expired ones left out) on subjects
 * matching any of `uriPatterns` (exact, or a prefix ending in `*`), optionally only from `sources`.
 */
export default function (ctx: LabelerContext): void {
  ctx.xrpc.method('com.atproto.label.queryLabels', {
    handler: async ({ params }) => {
      const patterns = params.uriPatterns as string[]
      const sources = params.sources as string[] | undefined
      const limit = (params.limit as number | undefined) ?? 50
      for (const p of patterns) {
        const star = p.indexOf('*')
        if (star >= 0 && star !== p.length - 1) {
          throw new InvalidRequestError(`only a trailing * is supported in uriPatterns: ${p}`)
        }
      }
      // "*" alone matches everything
      const all = patterns.includes('*')
      if (sources && sources.length > 0 && !sources.includes(ctx.config.did)) {
        return { encoding: 'application/json', body: { labels: [] } }
      }
      const found = await ctx.labels.query({
        uriPatterns: all ? undefined : patterns,
        after: seqCursor(params.cursor),
        limit,
      })
      const body: Record<string, unknown> = { labels: found.map((s) => s.label) }
      if (found.length === limit) body.cursor = String(found[found.length - 1]!.seq)
      return { encoding: 'application/json', body }
    },
  })
}
