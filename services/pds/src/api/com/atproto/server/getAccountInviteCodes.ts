import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

/**
 * com.atproto.server.getAccountInviteCodes: the caller's own invite codes. `createAvailable` (default
 * true) first creates the codes the account earned (PDS_INVITE_INTERVAL); `includeUsed` (default true)
 * keeps codes with no uses left. Disabled codes are never listed, and an account whose invites an admin
 * disabled gets none (its codes cannot be used to sign up).
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.getAccountInviteCodes', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, params }) => {
      const did = auth.credentials.did
      const includeUsed = params.includeUsed !== false
      const createAvailable = params.createAvailable !== false
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found', 'AccountNotFound')
      if (account.invitesDisabled) return { encoding: 'application/json', body: { codes: [] } }
      const { interval } = ctx.cfg.invites
      if (createAvailable && interval !== null) await ctx.accounts.createEarnedInviteCodes(did, interval)
      const codes = (await ctx.settings.inviteCodesOf(did)).filter(
        (c) => !c.disabled && (includeUsed || c.uses.length < c.available),
      )
      return { encoding: 'application/json', body: { codes } }
    },
  })
}
