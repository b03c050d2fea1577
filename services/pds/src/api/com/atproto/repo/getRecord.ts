import type { XrpcServer } from '@stratos/core/xrpc'
import { recordView } from '../../../../actor-store/record-json.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo, readableRepoSync } from '../../../../repo/access.js'
import { jsonText } from '../../../../util/json-output.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.getRecord', {
    handler: async ({ params }) => {
      const { repo: repoParam, collection, rkey, cid } = params as { repo: string; collection: string; rkey: string; cid?: string }
      const found = await readableRepo(ctx, repoParam)
      const record = found?.repo.getRecordJson(collection, rkey, { cid })
      if (!found || !record) {
        throw new InvalidRequestError(`Could not locate record: at://${repoParam}/${collection}/${rkey}`, 'RecordNotFound')
      }
      return jsonText(recordView(record.uri, record.cid, record.json))
    },
    // the same answer for a found record, without fastify's routing and hooks (core's XrpcServer); anything
    // else (not found, a DPoP proof, which oauth/provider.ts's hook answers with a nonce) takes the path above
    fastQuery: (params, req) => {
      if (req.headers.dpop !== undefined) return undefined
      const { repo: repoParam, collection, rkey, cid } = params as { repo: string; collection: string; rkey: string; cid?: string }
      const record = readableRepoSync(ctx, repoParam)?.repo.getRecordJson(collection, rkey, { cid })
      return record ? { body: recordView(record.uri, record.cid, record.json) } : undefined
    },
  })
}
