import type { XrpcServer } from '@stratos/core/xrpc'
import type { AppContext } from '../../../../context.js'
import { adminAccount, parseRecordUri } from '../../../../account/admin-views.js'
import { setAccountTakedown } from '../../../../account/lifecycle.js'
import { setBlobTakedown, setRecordTakedown } from '../../../../actor-store/takedown.js'
import { InvalidRequestError, NotFoundError } from '../../../../errors.js'

interface StatusAttr {
  applied: boolean
  ref?: string
}

interface Input {
  subject: { $type?: string; did?: string; uri?: string; cid?: string }
  takedown?: StatusAttr
  deactivated?: StatusAttr
}

const refOf = (attr: StatusAttr): string | null => (attr.applied ? attr.ref || new Date().toISOString() : null)

/**
 * Takedown (or restore) of an account, a record or a blob. An account takedown ends its sessions, hides
 * its repo (sync endpoints answer RepoTakendown, repo reads find nothing) and emits #account; the
 * `deactivated` attribute deactivates or reactivates an account the same way its owner would.
 */
export default function (server: XrpcServer, ctx: AppContext) {
  server.method('com.atproto.admin.updateSubjectStatus', {
    auth: ctx.auth.admin,
    handler: async ({ input }) => {
      const { subject, takedown, deactivated } = input!.body as Input
      const type = subject.$type
      if (type === 'com.atproto.admin.defs#repoRef') {
        const account = await adminAccount(ctx, subject.did!)
        if (takedown) await setAccountTakedown(ctx, account, refOf(takedown))
        if (deactivated && deactivated.applied !== !!account.deactivatedAt) {
          await ctx.accounts.setDeactivated(account.did, deactivated.applied)
          const current = await adminAccount(ctx, account.did)
          if (!current.takedownRef) {
            ctx.sequencer.sequenceAccount(account.did, !deactivated.applied, deactivated.applied ? 'deactivated' : undefined)
            await ctx.sequencer.durable()
          }
        }
      } else if (type === 'com.atproto.repo.strongRef') {
        const parsed = await parseRecordUri(ctx, subject.uri!)
        const repo = ctx.actorStore.get(parsed.account.did)
        if (takedown && (!repo || !setRecordTakedown(repo, parsed.uri, refOf(takedown)))) {
          throw new NotFoundError('Record not found', 'NotFound')
        }
      } else if (type === 'com.atproto.admin.defs#repoBlobRef') {
        const account = await adminAccount(ctx, subject.did!)
        const repo = ctx.actorStore.get(account.did)
        if (takedown && (!repo || !setBlobTakedown(repo, subject.cid!, refOf(takedown)))) {
          throw new NotFoundError('Blob not found', 'NotFound')
        }
      } else {
        throw new InvalidRequestError('Invalid subject')
      }
      const body: Record<string, unknown> = { subject }
      if (takedown) body.takedown = takedown
      return { encoding: 'application/json', body }
    },
  })
}
