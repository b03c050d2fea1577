import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'
import { InvalidRequestError } from '../../../../errors.js'
import { EMAIL_RE } from '../server/updateEmail.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.updateAccountEmail', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { account: id, email: raw } = input!.body as { account: string; email: string }
      const email = raw.trim().toLowerCase()
      if (!EMAIL_RE.test(email)) throw new InvalidRequestError('Invalid email address')
      const account = await adminAccount(ctx, id)
      const holder = await ctx.accounts.getAccountByEmail(email)
      if (holder && holder.did !== account.did) throw new InvalidRequestError('This email address is already in use')
      if (account.email !== email) await ctx.settings.updateEmail(account.did, email)
    },
  })
}
