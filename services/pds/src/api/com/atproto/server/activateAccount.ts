import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.activateAccount', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found', 'AccountNotFound')
      if (!account.deactivatedAt) return
      const repo = ctx.actorStore.get(did)
      const head = repo?.getHead()
      if (!repo || !head) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      await ctx.accounts.setDeactivated(did, false)
      // back on the network: identity (it may have changed meanwhile), status, and the current repo state
      ctx.sequencer.sequenceIdentity(did, account.handle ?? undefined)
      ctx.sequencer.sequenceAccount(did, true)
      ctx.sequencer.sequenceSync(did, head.cid, repo.storage.getBytesSync(head.cid)!, head.rev)
    },
  })
}
