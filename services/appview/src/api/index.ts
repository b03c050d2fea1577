/** Registers every app.bsky method this AppView implements (one file per method). */
import type { AuthResult, HandlerContext, HandlerOutput, MethodConfig, MethodHandler, Params, PlainHandlerContext, XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../context.js'
import actorGetProfile from './app/bsky/actor/getProfile.js'
import actorGetProfiles from './app/bsky/actor/getProfiles.js'
import actorGetSuggestions from './app/bsky/actor/getSuggestions.js'
import actorSearchActors from './app/bsky/actor/searchActors.js'
import actorSearchActorsTypeahead from './app/bsky/actor/searchActorsTypeahead.js'
import feedGetActorFeeds from './app/bsky/feed/getActorFeeds.js'
import feedGetActorLikes from './app/bsky/feed/getActorLikes.js'
import feedGetAuthorFeed from './app/bsky/feed/getAuthorFeed.js'
import feedGetFeed from './app/bsky/feed/getFeed.js'
import feedGetFeedGenerator from './app/bsky/feed/getFeedGenerator.js'
import feedGetFeedGenerators from './app/bsky/feed/getFeedGenerators.js'
import feedGetLikes from './app/bsky/feed/getLikes.js'
import feedGetListFeed from './app/bsky/feed/getListFeed.js'
import feedGetPostThread from './app/bsky/feed/getPostThread.js'
import feedGetPosts from './app/bsky/feed/getPosts.js'
import feedGetQuotes from './app/bsky/feed/getQuotes.js'
import feedGetRepostedBy from './app/bsky/feed/getRepostedBy.js'
import feedGetTimeline from './app/bsky/feed/getTimeline.js'
import feedSearchPosts from './app/bsky/feed/searchPosts.js'
import graphGetActorStarterPacks from './app/bsky/graph/getActorStarterPacks.js'
import graphGetBlocks from './app/bsky/graph/getBlocks.js'
import graphGetFollowers from './app/bsky/graph/getFollowers.js'
import graphGetFollows from './app/bsky/graph/getFollows.js'
import graphGetList from './app/bsky/graph/getList.js'
import graphGetListBlocks from './app/bsky/graph/getListBlocks.js'
import graphGetListMutes from './app/bsky/graph/getListMutes.js'
import graphGetLists from './app/bsky/graph/getLists.js'
import graphGetMutes from './app/bsky/graph/getMutes.js'
import graphGetRelationships from './app/bsky/graph/getRelationships.js'
import graphGetStarterPack from './app/bsky/graph/getStarterPack.js'
import graphGetStarterPacks from './app/bsky/graph/getStarterPacks.js'
import graphMuteActor from './app/bsky/graph/muteActor.js'
import graphMuteActorList from './app/bsky/graph/muteActorList.js'
import graphUnmuteActor from './app/bsky/graph/unmuteActor.js'
import graphUnmuteActorList from './app/bsky/graph/unmuteActorList.js'
import notificationGetUnreadCount from './app/bsky/notification/getUnreadCount.js'
import notificationListNotifications from './app/bsky/notification/listNotifications.js'
import notificationUpdateSeen from './app/bsky/notification/updateSeen.js'
import labelerGetServices from './app/bsky/labeler/getServices.js'
import { formatContentLabelers } from '../labels/labels.js'
import { runWithLabelers } from '../labels/request.js'
import { fixedRows } from '../hydration/sql.js'
import { validateOutput } from '@stratos/core/lexicon'
import { InternalServerError } from '@stratos/core/xrpc'
import { WORKER_METHODS, readOutput } from './read-pool.js'

/** Every method's registration (the read workers register the read-only ones the same way). */
export const methods: ((server: XrpcServer, ctx: AppContext) => void)[] = [
  actorGetProfile,
  actorGetProfiles,
  actorGetSuggestions,
  actorSearchActors,
  actorSearchActorsTypeahead,
  feedGetActorFeeds,
  feedGetActorLikes,
  feedGetAuthorFeed,
  feedGetFeed,
  feedGetFeedGenerator,
  feedGetFeedGenerators,
  feedGetLikes,
  feedGetListFeed,
  feedGetPostThread,
  feedGetPosts,
  feedGetQuotes,
  feedGetRepostedBy,
  feedGetTimeline,
  feedSearchPosts,
  graphGetActorStarterPacks,
  graphGetBlocks,
  graphGetFollowers,
  graphGetFollows,
  graphGetList,
  graphGetListBlocks,
  graphGetListMutes,
  graphGetLists,
  graphGetMutes,
  graphGetRelationships,
  graphGetStarterPack,
  graphGetStarterPacks,
  graphMuteActor,
  graphMuteActorList,
  graphUnmuteActor,
  graphUnmuteActorList,
  notificationGetUnreadCount,
  notificationListNotifications,
  notificationUpdateSeen,
  labelerGetServices,
]

export function registerMethods(server: XrpcServer, ctx: AppContext): void {
  const withRev = withRepoRev(server, ctx)
  for (const register of methods) register(withRev, ctx)
}

/**
 * The server, with every method's authenticated answers carrying `Atproto-Repo-Rev`: the rev of the
 * viewer's own repo this AppView has indexed. A PDS proxying the call merges in what the viewer wrote
 * after that rev (read-after-write), so users see their own new posts and profile edits at once.
 * Every handler also runs with the labelers the request accepts (`atproto-accept-labelers`, else the
 * AppView's defaults), whose labels the views carry, and answers which ones in `atproto-content-labelers`.
 */
function withRepoRev(server: XrpcServer, ctx: AppContext): XrpcServer {
  return new Proxy(server, {
    get(target, prop, receiver) {
      if (prop !== 'method') {
        const value: unknown = Reflect.get(target, prop, target)
        return typeof value === 'function' ? value.bind(target) : value
      }
      return (nsid: string, configOrHandler: MethodConfig<any, any> | MethodHandler<any, any>) => {
        const config = typeof configOrHandler === 'function' ? { handler: configOrHandler } : configOrHandler
        const pool = WORKER_METHODS.has(nsid) ? ctx.readPool : null
        if (pool) {
          // answered by a read worker once one is up (the output validated there), else here as before
          const validate = config.validateOutput ?? ctx.config.validateOutput
          // the worker methods' handlers read only the nsid, params and auth (the workers run them without
          // fastify's request and reply), so the same answer serves both paths: ahead of fastify for a plain GET
          const serve = async (call: PlainHandlerContext<unknown, Params>): Promise<HandlerOutput | void> => {
            const labelers = ctx.acceptedLabelers(call.req?.headers['atproto-accept-labelers'])
            const contentLabelers = formatContentLabelers(labelers)
            if (pool.available) {
              const viewer = (call.auth.credentials as { iss?: unknown } | null | undefined)?.iss
              const res = await pool.run({
                nsid,
                params: call.params,
                viewer: typeof viewer === 'string' ? viewer : null,
                labelers,
                publicUrl: ctx.publicUrl,
                validate,
              })
              const out = readOutput(res)
              return { ...out, headers: { ...out.headers, 'atproto-content-labelers': contentLabelers } }
            }
            const out = await addRepoRev(ctx, call.auth, await runWithLabelers(labelers, () => config.handler(call as HandlerContext<any, any>)))
            if (!out) return out
            if (validate) {
              try {
                validateOutput(nsid, out.encoding, out.body)
              } catch (err) {
                throw new InternalServerError(`Invalid output for ${nsid}: ${(err as Error).message}`, undefined, { cause: err })
              }
            }
            return { ...out, headers: { ...out.headers, 'atproto-content-labelers': contentLabelers } }
          }
          target.method(nsid, { ...config, validateOutput: false, handler: serve, fastProcedure: serve })
          return receiver
        }
        target.method(nsid, {
          ...config,
          handler: async (call) => {
            const labelers = ctx.acceptedLabelers(call.req.headers['atproto-accept-labelers'])
            const out = await addRepoRev(ctx, call.auth, await runWithLabelers(labelers, () => config.handler(call)))
            if (!out) return out
            return { ...out, headers: { ...out.headers, 'atproto-content-labelers': formatContentLabelers(labelers) } }
          },
        })
        return receiver
      }
    },
  })
}

async function addRepoRev(ctx: AppContext, auth: AuthResult<unknown>, out: HandlerOutput | void): Promise<HandlerOutput | void> {
  const viewer = (auth.credentials as { iss?: unknown } | null | undefined)?.iss
  if (!out || typeof viewer !== 'string') return out
  const [row] = await fixedRows<{ rev: string }>(ctx.db, 'SELECT rev FROM repo_state WHERE did = ?', [viewer])
  if (!row) return out
  return { ...out, headers: { ...out.headers, 'atproto-repo-rev': row.rev } }
}
