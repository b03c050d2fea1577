import { getPdsEndpoint, type DidDocument } from '@stratos/core/identity'
import type { AppContext } from '../context.js'
import { accountStatus, type Account } from './manager.js'
import type { SignedPlcOperation } from './plc.js'

/** The DID document a did:plc op renders to (what the PLC directory will serve). */
export function didDocForOp(did: string, op: SignedPlcOperation): DidDocument {
  return {
    '@context': ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1', 'https://w3id.org/security/suites/secp256k1-2019/v1'],
    id: did,
    alsoKnownAs: op.alsoKnownAs,
    verificationMethod: Object.entries(op.verificationMethods).map(([name, key]) => ({
      id: `${did}#${name}`,
      type: 'Multikey',
      controller: did,
      publicKeyMultibase: key.replace(/^did:key:/, ''),
    })),
    service: Object.entries(op.services).map(([name, s]) => ({ id: `#${name}`, type: s.type, serviceEndpoint: s.endpoint })),
  } as DidDocument
}

/** Session fields shared by createSession, getSession and refreshSession. */
export function sessionOutput(account: Account, opts: { includeEmail: boolean; didDoc?: unknown }): Record<string, unknown> {
  const out: Record<string, unknown> = { handle: account.handle ?? 'handle.invalid', did: account.did }
  if (opts.includeEmail && account.email) {
    out.email = account.email
    out.emailConfirmed = !!account.emailConfirmedAt
  }
  if (opts.didDoc) out.didDoc = opts.didDoc
  const status = accountStatus(account)
  out.active = status.active
  if (status.status) out.status = status.status
  return out
}

/**
 * The DID document to hand back with a session, or undefined. Only a document that names this PDS as
 * the account's atproto_pds: clients (AtpAgent) send every later call to the endpoint they find in it,
 * so an account still moving here (its document points at the old PDS) or one that moved away must not
 * get one.
 */
export async function didDocForSession(ctx: AppContext, did: string): Promise<DidDocument | undefined> {
  const doc = await ctx.idResolver.resolveDid(did).catch(() => null)
  if (!doc) return undefined
  const endpoint = getPdsEndpoint(doc)?.replace(/\/+$/, '')
  return endpoint === ctx.cfg.service.publicUrl ? doc : undefined
}
