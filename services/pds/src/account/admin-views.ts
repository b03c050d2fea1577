import type { Account } from './manager.js'
import type { AppContext } from '../context.js'
import { InvalidRequestError } from '../errors.js'

/** Views and lookups shared by the com.atproto.admin.* handlers. */

export async function adminAccount(ctx: AppContext, handleOrDid: string): Promise<Account> {
  const account = await ctx.accounts.getAccount(handleOrDid, { includeDeactivated: true, includeTakenDown: true })
  if (!account) throw new InvalidRequestError('Account not found', 'NotFound')
  return account
}

/** com.atproto.admin.defs#accountView */
export async function accountView(ctx: AppContext, account: Account): Promise<Record<string, unknown>> {
  const view: Record<string, unknown> = {
    did: account.did,
    handle: account.handle ?? 'handle.invalid',
    indexedAt: account.createdAt,
    invitesDisabled: account.invitesDisabled,
    invites: await ctx.settings.inviteCodesOf(account.did),
  }
  if (account.email) view.email = account.email
  if (account.emailConfirmedAt) view.emailConfirmedAt = account.emailConfirmedAt
  if (account.deactivatedAt) view.deactivatedAt = account.deactivatedAt
  const invitedBy = await ctx.settings.invitedBy(account.did)
  if (invitedBy) view.invitedBy = invitedBy
  return view
}

/** at://<did or handle>/<collection>/<rkey> → its parts with the DID (the record table keys by DID). */
export async function parseRecordUri(ctx: AppContext, uri: string): Promise<{ account: Account; uri: string; collection: string; rkey: string }> {
  const m = /^at:\/\/([^/]+)\/([^/]+)\/([^/?#]+)$/.exec(uri)
  if (!m) throw new InvalidRequestError(`Not a record URI: ${uri}`)
  const account = await adminAccount(ctx, decodeURIComponent(m[1]!))
  return { account, uri: `at://${account.did}/${m[2]}/${m[3]}`, collection: m[2]!, rkey: m[3]! }
}

export const statusAttr = (ref: string | null | undefined): { applied: boolean; ref?: string } =>
  ref ? { applied: true, ref } : { applied: false }
