import { Readable } from 'node:stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { syncRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getRecord', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { did, collection, rkey } = params as { did: string; collection: string; rkey: string }
      const { repo } = await syncRepo(ctx, did, auth.credentials)
      // the proof CAR (commit + MST path) answers both "here it is" and "it is not there"
      return { encoding: 'application/vnd.ipld.car', body: Readable.from(repo.recordProof(collection, rkey)) }
    },
  })
}
