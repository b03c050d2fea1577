import type { XrpcServer } from '@stratos/core/xrpc'
import { checkDidDocForService } from '../../../../account/migration.js'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * Activates a deactivated account: one that was deactivated here, or one that moved here (createAccount
 * with its DID, importRepo). Refused while the DID document does not point here (atproto_pds, #atproto =
 * the account's key, this PDS's rotation key for did:plc), as the network would not accept this PDS's
 * commits. Emits #identity, #account active and a #sync with the current commit, so relays (re)fetch
 * the repository from here.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.activateAccount', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth }) => {
      const { did } = auth.credentials
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found', 'AccountNotFound')
      if (!account.deactivatedAt) return
      const repo = ctx.actorStore.get(did)
      if (!repo || !repo.getHead()) throw new InvalidRequestError(`Could not find repo: ${did}`, 'RepoNotFound')
      const key = await ctx.repoWriter.signingKey(did)
      const check = await checkDidDocForService(ctx, did, key.did())
      if (!check.ok) throw new InvalidRequestError(check.message!)
      // announced under the repo lock, so no commit of this account can slip in between
      await repo.lock.run(async () => {
        const head = repo.getHead()!
        await ctx.accounts.setDeactivated(did, false)
        // back on the network: identity (it may have changed meanwhile), status, and the current repo state
        ctx.sequencer.sequenceIdentity(did, account.handle ?? undefined)
        ctx.sequencer.sequenceAccount(did, true)
        ctx.sequencer.sequenceSync(did, head.cid, repo.storage.getBytesSync(head.cid)!, head.rev)
      })
      await ctx.sequencer.durable()
      await ctx.idResolver.invalidate(did)
    },
  })
}
