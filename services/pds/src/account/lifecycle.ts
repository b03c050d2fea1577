import { cidForCbor } from '@stratos/core/data'
import type { AppContext } from '../context.js'
import { InvalidRequestError, UpstreamFailureError } from '../errors.js'
import { mailTemplates } from '../mailer.js'
import { accountStatus, type Account } from './manager.js'
import { ensureServiceHandleConstraints, normalizeAndValidateHandle, serviceDomainOf } from './handle.js'
import { PlcClientError, signPlcOperation, type SignedPlcOperation, type UnsignedPlcOperation } from './plc.js'
import type { EmailTokenPurpose } from './settings.js'

/**
 * Account life-cycle steps shared by the account's own methods and the admin API: handle changes (PLC +
 * service database + #identity), deletion, takedown, emailed tokens, PLC operations signed by this PDS.
 */

/** The last operation of a did:plc, which the next one must point to. */
export async function lastPlcOperation(ctx: AppContext, did: string): Promise<SignedPlcOperation> {
  let last: SignedPlcOperation | null
  try {
    last = await ctx.plc.getLastOp(did)
  } catch (err) {
    ctx.logger.warn({ err, did }, 'could not read the PLC log')
    throw new UpstreamFailureError('Could not reach the PLC directory')
  }
  if (!last) throw new InvalidRequestError(`DID not found at the PLC directory: ${did}`)
  if ((last as { type: string }).type !== 'plc_operation') {
    throw new InvalidRequestError('The DID has been tombstoned or uses a legacy operation format')
  }
  return last
}

/** The CID string of a signed op (the next op's `prev`). */
export const plcOpCid = (op: SignedPlcOperation): string => cidForCbor(op).toString()

/** Builds the op that follows `last` with `changes`, signed by this PDS's rotation key. */
export async function nextPlcOperation(
  ctx: AppContext,
  last: SignedPlcOperation,
  changes: Partial<Omit<UnsignedPlcOperation, 'type' | 'prev'>>,
): Promise<SignedPlcOperation> {
  if (!last.rotationKeys.includes(ctx.plcRotationKey.did())) {
    throw new InvalidRequestError("This PDS's rotation key is not among the DID's rotation keys; it cannot sign for it")
  }
  const unsigned: UnsignedPlcOperation = {
    type: 'plc_operation',
    rotationKeys: changes.rotationKeys ?? last.rotationKeys,
    verificationMethods: changes.verificationMethods ?? last.verificationMethods,
    alsoKnownAs: changes.alsoKnownAs ?? last.alsoKnownAs,
    services: changes.services ?? last.services,
    prev: plcOpCid(last),
  }
  return signPlcOperation(unsigned, ctx.plcRotationKey)
}

export async function submitPlcOperation(ctx: AppContext, did: string, op: SignedPlcOperation): Promise<void> {
  try {
    await ctx.plc.submit(did, op)
  } catch (err) {
    if (err instanceof PlcClientError && err.status >= 400 && err.status < 500) {
      throw new InvalidRequestError(err.message)
    }
    ctx.logger.warn({ err, did }, 'PLC directory did not take the operation')
    throw new UpstreamFailureError('Could not submit the operation to the PLC directory')
  }
  await ctx.idResolver.invalidate(did)
}

/**
 * Changes an account's handle: checks it (service-domain rules, or for another domain that it resolves
 * to the DID by DNS TXT or HTTPS well-known), updates the DID document at the PLC, the service database,
 * and emits #identity. Admins may take reserved names and skip the custom-domain check.
 */
export async function changeHandle(ctx: AppContext, did: string, rawHandle: string, opts: { admin?: boolean } = {}): Promise<string> {
  const { cfg } = ctx
  const handle = normalizeAndValidateHandle(rawHandle, { devMode: cfg.service.devMode })
  if (serviceDomainOf(handle, cfg.identity.serviceHandleDomains)) {
    ensureServiceHandleConstraints(handle, cfg.identity.serviceHandleDomains, opts.admin)
  } else if (!opts.admin) {
    const resolved = await ctx.idResolver.resolveHandle(handle)
    if (resolved !== did) {
      throw new InvalidRequestError(
        `External handle did not resolve to DID: put a TXT record "did=${did}" at _atproto.${handle}, or serve the DID at https://${handle}/.well-known/atproto-did`,
        'InvalidHandle',
      )
    }
  }
  const holder = await ctx.accounts.getAccount(handle, { includeDeactivated: true, includeTakenDown: true })
  if (holder && holder.did !== did) throw new InvalidRequestError(`Handle already taken: ${handle}`, 'HandleNotAvailable')

  if (did.startsWith('did:plc:')) {
    const last = await lastPlcOperation(ctx, did)
    const aka = [`at://${handle}`, ...last.alsoKnownAs.filter((a) => !a.startsWith('at://'))]
    if (last.alsoKnownAs[0] !== aka[0] || last.alsoKnownAs.length !== aka.length) {
      await submitPlcOperation(ctx, did, await nextPlcOperation(ctx, last, { alsoKnownAs: aka }))
    }
  }
  if (!holder) await ctx.settings.updateHandle(did, handle)
  ctx.sequencer.sequenceIdentity(did, handle)
  await ctx.sequencer.durable()
  return handle
}

/**
 * Removes an account: its repo and blobs, its rows in the service database, and tells the network with
 * #account (active false, status deleted). The DID itself is left as it is (not tombstoned), so its
 * owner can still move it to another PDS with their own rotation key.
 */
export async function deleteAccountData(ctx: AppContext, did: string): Promise<void> {
  await ctx.actorStore.destroy(did)
  await ctx.settings.deleteAccount(did)
  ctx.repoWriter.forget(did)
  ctx.sequencer.sequenceAccount(did, false, 'deleted')
  await ctx.sequencer.durable()
  await ctx.idResolver.invalidate(did)
}

/** Takes an account down (ref) or restores it (null), announcing the resulting status with #account. */
export async function setAccountTakedown(ctx: AppContext, account: Account, takedownRef: string | null): Promise<void> {
  if ((account.takedownRef ?? null) === takedownRef) return
  await ctx.settings.setTakedown(account.did, takedownRef)
  // a new reference on an account already taken down changes nothing the network sees
  if (!!account.takedownRef === !!takedownRef) return
  const status = accountStatus({ takedownRef, deactivatedAt: account.deactivatedAt })
  ctx.sequencer.sequenceAccount(account.did, status.active, status.status)
  await ctx.sequencer.durable()
}

const TEMPLATES: Record<EmailTokenPurpose, (token: string, account: Account) => { subject: string; text: string }> = {
  confirm_email: (t) => mailTemplates.confirmEmail(t),
  update_email: (t) => mailTemplates.updateEmail(t),
  reset_password: (t, a) => mailTemplates.resetPassword(a.handle ?? a.did, t),
  delete_account: (t) => mailTemplates.deleteAccount(t),
  plc_operation: (t) => mailTemplates.plcOperation(t),
}

/** Creates a token for `purpose` and mails it to the account's address (logged when there is no SMTP). */
export async function sendEmailToken(ctx: AppContext, account: Account, purpose: EmailTokenPurpose): Promise<void> {
  if (!account.email) throw new InvalidRequestError('The account has no email address')
  const token = await ctx.settings.createEmailToken(account.did, purpose)
  try {
    await ctx.mailer.send({ to: account.email, ...TEMPLATES[purpose](token, account) })
  } catch (err) {
    ctx.logger.error({ err, did: account.did, purpose }, 'could not send email')
    throw new UpstreamFailureError('Could not send the email, try again later')
  }
}
