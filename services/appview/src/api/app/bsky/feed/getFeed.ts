import { verifyServiceJwt } from '@stratos/core/auth'
import { AuthRequiredError, InvalidRequestError, UpstreamFailureError, parseAuthorization } from '@stratos/core/xrpc'
import { presentFeed } from '../../../feed-util.js'
import { json, type Register } from '../../../util.js'
import { feedgenEndpoint, fetchJson, parseSkeleton } from '../../../feedgen-util.js'

/**
 * A custom feed: the generator's getFeedSkeleton, hydrated here. A PDS mints the viewer's token for the
 * feed generator (aud = its DID, lxm = getFeedSkeleton) and sends it along; the AppView checks it,
 * takes the viewer from it, and forwards it to the generator. A token for the AppView itself
 * identifies the viewer but is not forwarded.
 */
const register: Register = (server, ctx) => {
  server.method('app.bsky.feed.getFeed', {
    handler: async ({ params, req }) => {
      const feedUri = params.feed as string
      const gen = await ctx.db.selectFrom('feed_generator').select(['feedDid']).where('uri', '=', feedUri).executeTakeFirst()
      if (!gen) throw new InvalidRequestError('could not find feed', 'UnknownFeed')

      let viewer: string | null = null
      let forward: string | undefined
      const token = parseAuthorization(req, 'Bearer')
      if (req.headers.authorization) {
        if (!token) throw new AuthRequiredError('a Bearer service JWT is expected')
        try {
          const payload = await verifyServiceJwt(token, {
            audience: [...ctx.audiences, gen.feedDid, `${gen.feedDid}#bsky_fg`],
            lxm: null,
            getSigningKey: (iss, force) => ctx.idResolver.getSigningKey(iss, force),
          })
          if (payload.lxm && !['app.bsky.feed.getFeed', 'app.bsky.feed.getFeedSkeleton'].includes(payload.lxm)) {
            throw new AuthRequiredError('token is for another method', 'BadJwtLexiconMethod')
          }
          viewer = payload.iss
          if (!ctx.audiences.includes(String(payload.aud))) forward = token
        } catch (err) {
          if (err instanceof AuthRequiredError) throw err
          const name = (err as { error?: unknown }).error
          throw new AuthRequiredError((err as Error).message, typeof name === 'string' ? name : 'BadJwt')
        }
      }

      const endpoint = await feedgenEndpoint(ctx, gen.feedDid)
      if (!endpoint) throw new InvalidRequestError('feed generator has no service endpoint', 'UnknownFeed')
      const url = new URL(`${endpoint.replace(/\/+$/, '')}/xrpc/app.bsky.feed.getFeedSkeleton`)
      url.searchParams.set('feed', feedUri)
      url.searchParams.set('limit', String(params.limit))
      if (params.cursor) url.searchParams.set('cursor', params.cursor as string)
      let res
      try {
        res = await fetchJson(ctx, url.toString(), forward ? { authorization: `Bearer ${forward}` } : {})
      } catch (err) {
        throw new UpstreamFailureError(`feed unavailable: ${(err as Error).message}`)
      }
      if (!res.ok) {
        let upstream: { error?: unknown; message?: unknown } = {}
        try {
          upstream = res.json()
        } catch {
          // not JSON
        }
        if (res.status === 400 && typeof upstream.error === 'string') {
          throw new InvalidRequestError(typeof upstream.message === 'string' ? upstream.message : 'feed error', upstream.error)
        }
        throw new UpstreamFailureError(`feed unavailable (HTTP ${res.status})`)
      }
      let skeleton
      try {
        skeleton = parseSkeleton(res.json())
      } catch {
        skeleton = undefined
      }
      if (!skeleton) throw new UpstreamFailureError('malformed feed skeleton')
      const items = skeleton.items.slice(0, params.limit as number)
      const feed = await presentFeed(
        ctx,
        viewer,
        items.map((i) => ({ postUri: i.post, ...(i.repost ? { repostUri: i.repost } : {}), ...(i.pinned ? { pinned: true } : {}) })),
        { applyMutes: true },
      )
      const contexts = new Map(items.filter((i) => i.feedContext).map((i) => [i.post, i.feedContext!]))
      for (const f of feed) {
        const c = contexts.get(f.post.uri)
        if (c) f.feedContext = c
        if (skeleton.reqId) f.reqId = skeleton.reqId
      }
      return json({ feed, cursor: skeleton.cursor })
    },
  })
}
export default register
