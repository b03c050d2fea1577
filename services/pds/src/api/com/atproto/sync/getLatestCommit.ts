import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { syncRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getLatestCommit', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { repo } = await syncRepo(ctx, params.did as string, auth.credentials)
      const head = repo.getHead()!
      return { encoding: 'application/json', body: { cid: head.cid.toString(), rev: head.rev } }
    },
  })
}
