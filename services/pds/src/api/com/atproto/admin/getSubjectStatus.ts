import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount, parseRecordUri, statusAttr } from '../../../../account/admin-views.js'
import { getBlobTakedown, getRecordTakedown } from '../../../../actor-store/takedown.js'
import { InvalidRequestError, NotFoundError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.getSubjectStatus', {
    auth: ctx.auth.admin,
    handler: async ({ params }) => {
      const { did, uri, blob } = params as { did?: string; uri?: string; blob?: string }
      let body: Record<string, unknown>
      if (blob) {
        if (!did) throw new InvalidRequestError('Must provide a did to request blob state')
        const account = await adminAccount(ctx, did)
        const row = ctx.actorStore.get(account.did) ? getBlobTakedown(ctx.actorStore.get(account.did)!, blob) : null
        if (!row) throw new NotFoundError('Blob not found', 'NotFound')
        body = {
          subject: { $type: 'com.atproto.admin.defs#repoBlobRef', did: account.did, cid: blob },
          takedown: statusAttr(row.takedownRef),
        }
      } else if (uri) {
        const parsed = await parseRecordUri(ctx, uri)
        const repo = ctx.actorStore.get(parsed.account.did)
        const row = repo ? getRecordTakedown(repo, parsed.uri) : null
        if (!row) throw new NotFoundError('Record not found', 'NotFound')
        body = {
          subject: { $type: 'com.atproto.repo.strongRef', uri: parsed.uri, cid: row.cid },
          takedown: statusAttr(row.takedownRef),
        }
      } else if (did) {
        const account = await adminAccount(ctx, did)
        body = {
          subject: { $type: 'com.atproto.admin.defs#repoRef', did: account.did },
          takedown: statusAttr(account.takedownRef),
          deactivated: account.deactivatedAt ? { applied: true } : { applied: false },
        }
      } else {
        throw new InvalidRequestError('No provided subject')
      }
      return { encoding: 'application/json', body }
    },
  })
}
