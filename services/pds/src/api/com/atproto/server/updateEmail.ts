import type { XrpcServer } from '@stratos/core/xrpc'
import { ACCESS_FULL } from '../../../../auth.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export const EMAIL_RE = /^[^\s@]+@[^\s@]+\.[^\s@]+$/

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.updateEmail', {
    auth: ctx.auth.access(ACCESS_FULL, { checkTakedown: true }),
    handler: async ({ auth, input }) => {
      const { did } = auth.credentials
      const { email: rawEmail, token } = input!.body as { email: string; token?: string }
      const email = rawEmail.trim().toLowerCase()
      if (!EMAIL_RE.test(email)) throw new InvalidRequestError('This email address is not supported, please use a different email.')
      const account = await ctx.accounts.getAccount(did, { includeDeactivated: true })
      if (!account) throw new InvalidRequestError('Account not found')
      if (account.emailConfirmedAt) {
        if (!token) throw new InvalidRequestError('Confirmation token required', 'TokenRequired')
        await ctx.settings.consumeEmailToken(did, 'update_email', token)
      }
      if (account.email === email) return
      const holder = await ctx.accounts.getAccountByEmail(email)
      if (holder && holder.did !== did) {
        throw new InvalidRequestError('This email address is already in use, please use a different email.')
      }
      await ctx.settings.updateEmail(did, email)
    },
  })
}
