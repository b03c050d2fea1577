import { InvalidRequestError } from '@stratos/core/xrpc'
import type { RelayContext } from '../../../../../context.js'
import { accountView } from '../../../../util.js'
import { adminAuth } from './auth.js'

/** com.stratos.relay.admin.getAccount: an account as the relay sees it. */
export default function (ctx: RelayContext): void {
  ctx.xrpc.method('com.stratos.relay.admin.getAccount', {
    auth: adminAuth(ctx),
    handler: ({ params }) => {
      const did = params.did as string
      const account = ctx.accounts.get(did)
      if (!account) throw new InvalidRequestError(`unknown account: ${did}`, 'RepoNotFound')
      return { encoding: 'application/json', body: accountView(ctx, account) }
    },
  })
}
