import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount } from '../../../../account/admin-views.js'
import { InvalidRequestError, UpstreamFailureError } from '../../../../errors.js'

export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.sendEmail', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { recipientDid, content, subject, senderDid } = input!.body as {
        recipientDid: string
        content: string
        subject?: string
        senderDid: string
      }
      const account = await adminAccount(ctx, recipientDid)
      if (!account.email) throw new InvalidRequestError('The account has no email address')
      try {
        await ctx.mailer.send({ to: account.email, subject: subject ?? `Message from ${ctx.cfg.service.serviceName}`, text: content })
      } catch (err) {
        ctx.logger.error({ err, recipientDid }, 'could not send admin email')
        throw new UpstreamFailureError('Could not send the email')
      }
      ctx.logger.info({ recipientDid, senderDid }, 'admin email sent')
      return { encoding: 'application/json', body: { sent: true } }
    },
  })
}
