import type { XrpcServer } from '@stratos/core/xrpc'
import { recordView } from '../../../../actor-store/record-json.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'
import { readableRepo } from '../../../../repo/access.js'
import { jsonText } from '../../../../util/json-output.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.repo.listRecords', {
    handler: async ({ params }) => {
      const { repo: repoParam, collection, cursor, reverse } = params as {
        repo: string
        collection: string
        limit?: number
        cursor?: string
        reverse?: boolean
      }
      const limit = (params.limit as number | undefined) ?? 50
      const found = await readableRepo(ctx, repoParam)
      if (!found) throw new InvalidRequestError(`Could not find repo: ${repoParam}`)
      const rows = found.repo.listRecordsJson({ collection, limit, cursor, reverse })
      const records = rows.filter((r) => r.json !== null).map((r) => recordView(r.uri, r.cid, r.json!))
      let text = `{"records":[${records.join(',')}]`
      if (rows.length === limit) text += `,"cursor":${JSON.stringify(rows[rows.length - 1]!.rkey)}`
      return jsonText(`${text}}`)
    },
  })
}
