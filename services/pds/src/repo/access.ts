import { CID } from 'multiformats/cid'
import type { Account } from '../account/manager.js'
import type { ActorRepo } from '../actor-store/index.js'
import type { AccessCredentials, ViewerCredentials } from '../auth.js'
import type { AppContext } from '../context.js'
import { ForbiddenError, InvalidRequestError } from '../errors.js'

/**
 * Resolves the `repo` of a write (handle or DID) to a local account and checks it is the caller's own.
 * Another account's repo → 403 Forbidden (the caller is authenticated, just not allowed). The account
 * the auth check read for this request is used when `repo` is the caller's DID.
 */
export async function ownRepo(
  ctx: AppContext,
  repoParam: string,
  caller: AccessCredentials,
  opts: { allowDeactivated?: boolean } = {},
): Promise<{ account: Account; repo: ActorRepo }> {
  const callerDid = caller.did
  const account =
    caller.account && caller.account.did === repoParam && repoParam === callerDid
      ? caller.account
      : await ctx.accounts.getAccount(repoParam, { includeDeactivated: true, includeTakenDown: true })
  if (!account) throw new InvalidRequestError(`Could not find repo: ${repoParam}`, 'RepoNotFound')
  if (account.did !== callerDid) throw new ForbiddenError('Cannot modify another account\'s repository')
  if (account.deactivatedAt && !opts.allowDeactivated) throw new InvalidRequestError('Account is deactivated', 'AccountDeactivated')
  if (account.takedownRef) throw new InvalidRequestError('Account has been taken down', 'AccountTakedown')
  const repo = ctx.actorStore.get(account.did)
  if (!repo) throw new InvalidRequestError(`Could not find repo: ${repoParam}`, 'RepoNotFound')
  return { account, repo }
}

/** A local account's repo for reads: hidden (not found) when the account is not active. */
export async function readableRepo(ctx: AppContext, repoParam: string): Promise<{ account: Account; repo: ActorRepo } | null> {
  const account = await ctx.accounts.getAccount(repoParam)
  if (!account) return null
  const repo = ctx.actorStore.get(account.did)
  return repo ? { account, repo } : null
}

/** {@link readableRepo} without a promise; undefined when it cannot answer synchronously. */
export function readableRepoSync(ctx: AppContext, repoParam: string): { account: Account; repo: ActorRepo } | null | undefined {
  const account = ctx.accounts.getAccountSync(repoParam)
  if (!account) return account
  const repo = ctx.actorStore.get(account.did)
  return repo ? { account, repo } : null
}

/**
 * For com.atproto.sync.*: the repo of a DID hosted here, with the spec's errors for accounts that are
 * not active (RepoNotFound, RepoTakendown, RepoDeactivated).
 */
export async function syncRepo(
  ctx: AppContext,
  did: string,
  viewer: ViewerCredentials = null,
): Promise<{ account: Account; repo: ActorRepo }> {
  const account = await ctx.accounts.getAccount(did, { includeDeactivated: true, includeTakenDown: true })
  const repo = account ? ctx.actorStore.get(account.did) : null
  if (!account || !repo) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  const admin = viewer?.type === 'admin'
  // the account itself (e.g. exporting its data to move away) and admins still see a deactivated repo
  const self = viewer?.type === 'access' && viewer.did === account.did
  if (account.takedownRef && !admin) throw new InvalidRequestError(`Repo has been takendown: ${did}`, 'RepoTakendown')
  if (account.deactivatedAt && !admin && !self) throw new InvalidRequestError(`Repo has been deactivated: ${did}`, 'RepoDeactivated')
  return { account, repo }
}

/** A CID given as a string param / body field (swapCommit, swapRecord, cid): undefined when absent. */
export function parseCid(value: unknown, name: string): CID | undefined {
  if (value === undefined || value === null) return undefined
  const asCid = CID.asCID(value)
  if (asCid) return asCid
  if (typeof value !== 'string') throw new InvalidRequestError(`${name} must be a CID`)
  try {
    return CID.parse(value)
  } catch {
    throw new InvalidRequestError(`${name} is not a valid CID: ${value}`)
  }
}
