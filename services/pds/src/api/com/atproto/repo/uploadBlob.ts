import type { Readable } from 'node:stream'
import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_STANDARD } from '../../../../auth.js'
import { BlobTooLargeError } from '../../../../blobstore.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError, PayloadTooLargeError, XRPCError } from '../../../../errors.js'
import { ownRepo } from '../../../../repo/access.js'

const MIME_RE = /^[a-z0-9!#$&^_.+-]+\/[a-z0-9!#$&^_.+-]+$/i

/** Uploads of each account under way (they count against its quota before they are stored). */
const inFlight = new Map<string, { count: number; bytes: number }>()

function quotaError(what: string): XRPCError {
  return new XRPCError(
    429,
    'RateLimitExceeded',
    `Too many uploaded blobs not yet used in a record (${what}); reference them in a record or wait until they expire`,
  )
}

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.uploadBlob', {
    // a deactivated account may upload: an account moving here brings its blobs before it is activated
    auth: ctx.auth.access(ACCESS_STANDARD, { checkTakedown: true }),
    rawInput: 'stream',
    bodyLimit: ctx.cfg.service.blobUploadLimit,
    handler: async ({ auth, input, req }) => {
      const { repo } = await ownRepo(ctx, auth.credentials.did, auth.credentials, { allowDeactivated: true })
      const mimeType = (input!.encoding.split(';')[0] ?? '').trim().toLowerCase()
      if (!MIME_RE.test(mimeType) || mimeType === '*/*') {
        throw new InvalidRequestError('Content-Type must name the blob\'s MIME type')
      }
      // per-account quota on unreferenced uploads: counted before reading the body (with the uploads
      // under way), and again with the real size once it is stored
      const { maxCount, maxBytes } = ctx.cfg.tempBlobQuota
      const did = auth.credentials.did
      const usage = repo.tempBlobUsage()
      const pending = inFlight.get(did) ?? { count: 0, bytes: 0 }
      const declared = Number(req.headers['content-length'] ?? 0) || 0
      if (usage.count + pending.count + 1 > maxCount) throw quotaError(`at most ${maxCount}`)
      if (usage.bytes + pending.bytes + declared > maxBytes) throw quotaError(`at most ${maxBytes} bytes`)
      const reserve = Math.min(declared || ctx.cfg.service.blobUploadLimit, ctx.cfg.service.blobUploadLimit)
      pending.count++
      pending.bytes += reserve
      inFlight.set(did, pending)
      let uploaded
      try {
        uploaded = await ctx.blobstore.putTemp(input!.body as Readable, ctx.cfg.service.blobUploadLimit)
      } catch (err) {
        if (err instanceof BlobTooLargeError || err instanceof PayloadTooLargeError) {
          throw new PayloadTooLargeError(`Blob is larger than the limit of ${ctx.cfg.service.blobUploadLimit} bytes`)
        }
        throw err
      } finally {
        pending.count--
        pending.bytes -= reserve
        if (pending.count === 0) inFlight.delete(did)
      }
      const after = repo.tempBlobUsage()
      if (after.count + 1 > maxCount || after.bytes + uploaded.size > maxBytes) {
        await ctx.blobstore.deleteTemp(uploaded.key)
        throw quotaError(after.count + 1 > maxCount ? `at most ${maxCount}` : `at most ${maxBytes} bytes`)
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
