import { Readable } from 'node:stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { syncRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getRepo', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { did, since } = params as { did: string; since?: string }
      const { repo } = await syncRepo(ctx, did, auth.credentials)
      const head = repo.getHead()!
      const headers = { 'atproto-repo-rev': head.rev }
      if (since) return { encoding: 'application/vnd.ipld.car', body: repo.exportSince(since), headers }
      return { encoding: 'application/vnd.ipld.car', body: Readable.from(repo.exportRepo()), headers }
    },
  })
}
