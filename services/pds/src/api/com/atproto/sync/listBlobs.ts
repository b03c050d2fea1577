import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { syncRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.listBlobs', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { did, since, cursor } = params as { did: string; since?: string; cursor?: string }
      const limit = (params.limit as number | undefined) ?? 500
      const { repo } = await syncRepo(ctx, did, auth.credentials)
      const cids = repo.listBlobs({ since, cursor, limit })
      const body: Record<string, unknown> = { cids }
      if (cids.length === limit) body.cursor = cids[cids.length - 1]
      return { encoding: 'application/json', body }
    },
  })
}
