import type { AppBskyGraphDefs } from '@atproto/api'
import { InvalidRequestError } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { HydrationState } from '../../../../hydration/hydrator.js'
import { json, viewerOf, type Register } from '../../../util.js'

const SAMPLE = 12

/** Full starter pack views: the list, a sample of its members, its feeds. */
export async function starterPackViews(ctx: AppContext, viewer: string | null, uris: string[]): Promise<AppBskyGraphDefs.StarterPackView[]> {
  const state = new HydrationState(viewer)
  await ctx.hydrator.starterPacks(state, uris)
  const samples = new Map<string, { uri: string; subjectDid: string }[]>()
  const feedUris: string[] = []
  for (const uri of uris) {
    const sp = state.starterPacks.get(uri)
    if (!sp) continue
    const items = await ctx.db
      .selectFrom('list_item')
      .select(['uri', 'subjectDid'])
      .where('listUri', '=', sp.listUri)
      .orderBy('sortAt', 'desc')
      .orderBy('uri', 'desc')
      .limit(SAMPLE)
      .execute()
    samples.set(uri, items)
    const feeds = Array.isArray(sp.record.feeds) ? sp.record.feeds : []
    for (const f of feeds) if (f && typeof f === 'object' && typeof (f as { uri?: unknown }).uri === 'string') feedUris.push((f as { uri: string }).uri)
  }
  await ctx.hydrator.actors(state, [...samples.values()].flat().map((i) => i.subjectDid))
  await ctx.hydrator.feedgens(state, feedUris)
  return uris.map((u) => ctx.views.starterPack(state, u, samples.get(u) ?? [])).filter((v) => v !== undefined)
}

const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getStarterPack', {
    auth: ctx.auth.optional,
    handler: async ({ params, auth }) => {
      const [starterPack] = await starterPackViews(ctx, viewerOf(auth), [params.starterPack as string])
      if (!starterPack) throw new InvalidRequestError('Starter pack not found')
      return json({ starterPack })
    },
  })
}
export default register
