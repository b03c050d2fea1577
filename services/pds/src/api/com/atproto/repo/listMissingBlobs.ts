import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/** Blobs the caller's records reference that this PDS does not hold (after importRepo), by CID. */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.listMissingBlobs', {
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    handler: async ({ auth, params }) => {
      const { did } = auth.credentials
      const { limit = 500, cursor } = params as { limit?: number; cursor?: string }
      const repo = ctx.actorStore.get(did)
      if (!repo) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      const blobs = repo.listMissingBlobs({ limit, cursor })
      const body: Record<string, unknown> = { blobs }
      if (blobs.length === limit) body.cursor = blobs[blobs.length - 1]!.cid
      return { encoding: 'application/json', body }
    },
  })
}
