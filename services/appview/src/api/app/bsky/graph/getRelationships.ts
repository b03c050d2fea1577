import type { $Typed, AppBskyGraphDefs } from '@atproto/api'
import { InvalidRequestError } from '@stratos/core/xrpc'
import { json, resolveActor, type Register } from '../../../util.js'

/** Follow and block relationships between `actor` and each of `others` (public data). */
const register: Register = (server, ctx) => {
  server.method('app.bsky.graph.getRelationships', {
    auth: ctx.auth.optional,
    handler: async ({ params }) => {
      const actor = await resolveActor(ctx.db, params.actor as string)
      if (!actor) throw new InvalidRequestError('Actor not found', 'ActorNotFound')
      const others = (params.others as string[] | undefined) ?? []
      if (others.length === 0) return json({ actor, relationships: [] })
      const resolved = await Promise.all(others.map((o) => resolveActor(ctx.db, o)))
      const dids = resolved.filter((d): d is string => !!d)
      const db = ctx.db
      const none = ['']
      const targets = dids.length ? dids : none
      const [following, followedBy, blocking, blockedBy, blockingByList, blockedByList] = await Promise.all([
        db.selectFrom('follow').select(['uri', 'subjectDid as did']).where('creator', '=', actor).where('subjectDid', 'in', targets).execute(),
        db.selectFrom('follow').select(['uri', 'creator as did']).where('subjectDid', '=', actor).where('creator', 'in', targets).execute(),
        db.selectFrom('block').select(['uri', 'subjectDid as did']).where('creator', '=', actor).where('subjectDid', 'in', targets).execute(),
        db.selectFrom('block').select(['uri', 'creator as did']).where('subjectDid', '=', actor).where('creator', 'in', targets).execute(),
        db
          .selectFrom('list_block')
          .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
          .select(['list_block.subjectUri as uri', 'list_item.subjectDid as did'])
          .where('list_block.creator', '=', actor)
          .where('list_item.subjectDid', 'in', targets)
          .execute(),
        db
          .selectFrom('list_block')
          .innerJoin('list_item', 'list_item.listUri', 'list_block.subjectUri')
          .select(['list_block.subjectUri as uri', 'list_block.creator as did'])
          .where('list_item.subjectDid', '=', actor)
          .where('list_block.creator', 'in', targets)
          .execute(),
      ])
      const pick = (rows: { uri: string; did: string }[], did: string) => rows.find((r) => r.did === did)?.uri
      const relationships: ($Typed<AppBskyGraphDefs.Relationship> | $Typed<AppBskyGraphDefs.NotFoundActor>)[] = []
      others.forEach((other, i) => {
        const did = resolved[i]
        if (!did) {
          relationships.push({ $type: 'app.bsky.graph.defs#notFoundActor', actor: other, notFound: true })
          return
        }
        const rel: $Typed<AppBskyGraphDefs.Relationship> = { $type: 'app.bsky.graph.defs#relationship', did }
        const f = pick(following, did)
        const fb = pick(followedBy, did)
        const b = pick(blocking, did)
        const bb = pick(blockedBy, did)
        const bl = pick(blockingByList, did)
        const bbl = pick(blockedByList, did)
        if (f) rel.following = f
        if (fb) rel.followedBy = fb
        if (b) rel.blocking = b
        if (bb) rel.blockedBy = bb
        if (bl) rel.blockingByList = bl
        if (bbl) rel.blockedByList = bbl
        relationships.push(rel)
      })
      return json({ actor, relationships })
    },
  })
}
export default register
