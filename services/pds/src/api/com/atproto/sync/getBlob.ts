import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { syncRepo } from '../../../../repo/access.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.sync.getBlob', {
    auth: ctx.auth.viewer(),
    handler: async ({ params, auth }) => {
      const { did, cid } = params as { did: string; cid: string }
      const { repo } = await syncRepo(ctx, did, auth.credentials)
      const blob = repo.getBlob(cid)
      // temporary (never referenced) and taken-down blobs are not served
      const stream = blob && !blob.tempKey && !blob.takedownRef ? await ctx.blobstore.getStream(did, cid) : null
      if (!blob || !stream) throw new InvalidRequestError('Blob not found', 'BlobNotFound')
      return {
        encoding: blob.mimeType,
        body: stream,
        headers: {
          'content-length': String(blob.size),
          'x-content-type-options': 'nosniff',
          'content-security-policy': "default-src 'none'; sandbox",
        },
      }
    },
  })
}
