import type { XrpcServer } from '@stratos/core/xrpc'
import { MAX_PASSWORD_LENGTH } from '../../../../account/password.js'
import type { AppContext } from '../../../../context.js'
import { InvalidRequestError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.server.resetPassword', {
    rateLimit: [{ points: 50, durationMs: 5 * 60 * 1000 }],
    handler: async ({ input }) => {
      const { token, password } = input!.body as { token: string; password: string }
      if (password.length === 0) throw new InvalidRequestError('Password is required', 'InvalidPassword')
      if (password.length > MAX_PASSWORD_LENGTH) {
        throw new InvalidRequestError(`Password too long. Maximum length is ${MAX_PASSWORD_LENGTH} characters.`, 'InvalidPassword')
      }
      const did = await ctx.settings.didForEmailToken('reset_password', token)
      await ctx.settings.consumeEmailToken(did, 'reset_password', token)
      // every session ends with the old password
      await ctx.settings.updatePassword(did, password)
    },
  })
}
