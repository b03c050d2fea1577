import type { Readable } from 'node:stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD } from '../../../../auth.js'
import { BlobTooLargeError } from '../../../../blobstore.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError, PayloadTooLargeError } from '../../../../errors.js'
import { ownRepo } from '../../../../repo/access.js'

const MIME_RE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.uploadBlob', {
    // a deactivated account may upload: an account moving here brings its blobs before it is activated
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    rawInput: 'stream',
    bodyLimit: ctx.cfg.service.blobUploadLimit,
    handler: async ({ auth, input }) => {
      const { repo } = await ownRepo(ctx, auth.credentials.did, auth.credentials.did, { allowDeactivated: true })
      const mimeType = (input!.encoding.split(';')[0] ?? '').trim().toLowerCase()
      if (!MIME_RE.test(mimeType) || mimeType === '*/*') {
        throw new InvalidRequestError('Content-Type must name the blob\'s MIME type')
      }
      let uploaded
      try {
        uploaded = await ctx.blobstore.putTemp(input!.body as Readable, ctx.cfg.service.blobUploadLimit)
      } catch (err) {
        if (err instanceof BlobTooLargeError || err instanceof PayloadTooLargeError) {
          throw new PayloadTooLargeError(`Blob is larger than the limit of ${ctx.cfg.service.blobUploadLimit} bytes`)
        }
        throw err
      }
      if (uploaded.size === 0) {
        await ctx.blobstore.deleteTemp(uploaded.key)
        throw new InvalidRequestError('Blob is empty')
      }
      await repo.trackUploadedBlob(uploaded.key, uploaded.cid, uploaded.size, mimeType)
      return {
        encoding: 'application/json',
        body: { blob: { $type: 'blob', ref: uploaded.cid, mimeType, size: uploaded.size } },
      }
    },
  })
}
