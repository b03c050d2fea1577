import { HydrationState } from '../../../../hydration/hydrator.js'
import { LABELER_COLLECTION } from '../../../../labels/labels.js'
import { json, viewerOf, type Register } from '../../../util.js'

/**
 * app.bsky.labeler.getServices: the labeler services (app.bsky.labeler.service records, rkey self) of
 * `dids`, in their order; `detailed` adds the declared policies (label values and their definitions) and
 * report settings.
 */
const register: Register = (server, ctx) => {
  server.method('app.bsky.labeler.getServices', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const dids = [...new Set(params.dids as string[])]
      const detailed = params.detailed === true
      const rows = dids.length
        ? await ctx.db
            .selectFrom('record')
            .leftJoin('record_agg', 'record_agg.uri', 'record.uri')
            .select(['record.uri', 'record.cid', 'record.did', 'record.json', 'record.indexedAt', 'record_agg.likeCount'])
            // (each account's service record by its URI: one key each)
            .where('record.uri', 'in', dids.map((did) => `at://${did}/${LABELER_COLLECTION}/self`))
            .execute()
        : []
      const state = new HydrationState(viewerOf(auth))
      await ctx.hydrator.actors(state, rows.map((r) => r.did))
      await ctx.hydrator.labelerRecords(state, rows.map((r) => r.uri))
      const byDid = new Map(rows.map((r) => [r.did, r]))
      const views: Record<string, unknown>[] = []
      for (const did of dids) {
        const r = byDid.get(did)
        if (!r) continue
        const creator = ctx.views.profile(state, did)
        if (!creator) continue
        const record = JSON.parse(r.json) as Record<string, unknown>
        const view: Record<string, unknown> = {
          uri: r.uri,
          cid: r.cid,
          creator,
          likeCount: Math.max(0, Number(r.likeCount ?? 0)),
          indexedAt: r.indexedAt,
          labels: ctx.views.labelsOf(state, r.uri, { cid: r.cid, creator: did, record, cts: r.indexedAt }),
        }
        if (state.viewer) {
          const like = state.viewerLikes.get(r.uri)
          view.viewer = like ? { like } : {}
        }
        if (detailed) {
          view.$type = 'app.bsky.labeler.defs#labelerViewDetailed'
          view.policies = record.policies ?? { labelValues: [] }
          for (const key of ['reasonTypes', 'subjectTypes', 'subjectCollections'] as const) {
            if (Array.isArray(record[key])) view[key] = record[key]
          }
        } else {
          view.$type = 'app.bsky.labeler.defs#labelerView'
        }
        views.push(view)
      }
      return json({ views })
    },
  })
}
export default register
