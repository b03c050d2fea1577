/**
 * `stratos labeler init`: turns an account on a PDS into a labeler, through the account's own PDS:
 *   1. the app.bsky.labeler.service record (rkey self): the label values it publishes and their definitions;
 *   2. its DID document gains the #atproto_label key (the labeler's signing key) and the #atproto_labeler
 *      service (the labeler's URL), by the PLC operation flow: requestPlcOperationSignature (a code is
 *      emailed), signPlcOperation with the code, submitPlcOperation.
 * Step 2 is skipped when the document already says so.
 */
import { AtpAgent, type AppBskyLabelerService } from '@atproto/api'
import { getServiceEndpoint, getVerificationKey, type DidDocument } from '@stratos/core/identity'

export const LABELER_RECORD = 'app.bsky.labeler.service'

/** Label values a new labeler declares unless told otherwise: the global ones clients know, and two of its own. */
export const DEFAULT_POLICIES: AppBskyLabelerService.Record['policies'] = {
  labelValues: ['!hide', '!warn', 'porn', 'sexual', 'nudity', 'graphic-media', 'spam', 'misleading'],
  labelValueDefinitions: [
    {
      identifier: 'spam',
      severity: 'inform',
      blurs: 'none',
      defaultSetting: 'hide',
      adultOnly: false,
      locales: [{ lang: 'en', name: 'Spam', description: 'Unwanted, repeated or automated content.' }],
    },
    {
      identifier: 'misleading',
      severity: 'alert',
      blurs: 'content',
      defaultSetting: 'warn',
      adultOnly: false,
      locales: [{ lang: 'en', name: 'Misleading', description: 'False or misleading claims.' }],
    },
  ],
}

export interface LabelerInitOptions {
  /** the PDS of the labeler account */
  pdsUrl: string
  /** the account's handle or DID, and its password */
  identifier: string
  password: string
  /** the URL the labeler serves at (its #atproto_labeler endpoint) */
  labelerUrl: string
  /** did:key of the labeler's signing key (#atproto_label) */
  labelKey: string
  /** declared label values and definitions (default DEFAULT_POLICIES) */
  policies?: AppBskyLabelerService.Record['policies']
  /** where to read the DID document (PLC directory base URL); without it the PLC operation always runs */
  plcUrl?: string
  /**
   * The emailed confirmation code. A function is called after the code was requested (e.g. reads the dev
   * PDS's mail); a string is used as is; undefined: the code is requested and init stops, to be run again
   * with it.
   */
  token?: string | (() => Promise<string>)
}

export interface LabelerInitResult {
  did: string
  handle: string
  /** the record's URI */
  record: string
  /** the DID document was updated (false: it was already right) */
  didDocumentUpdated: boolean
  /** the code was requested by email; run again with it to finish */
  tokenRequested: boolean
}

async function currentDoc(plcUrl: string, did: string): Promise<DidDocument | null> {
  const res = await fetch(`${plcUrl.replace(/\/+$/, '')}/${encodeURIComponent(did)}`)
  if (!res.ok) return null
  return (await res.json()) as DidDocument
}

export async function initLabeler(opts: LabelerInitOptions): Promise<LabelerInitResult> {
  const agent = new AtpAgent({ service: opts.pdsUrl })
  await agent.login({ identifier: opts.identifier, password: opts.password })
  const did = agent.session!.did
  const handle = agent.session!.handle

  const put = await agent.com.atproto.repo.putRecord({
    repo: did,
    collection: LABELER_RECORD,
    rkey: 'self',
    record: { $type: LABELER_RECORD, policies: opts.policies ?? DEFAULT_POLICIES, createdAt: new Date().toISOString() },
  })
  const result: LabelerInitResult = { did, handle, record: put.data.uri, didDocumentUpdated: false, tokenRequested: false }

  if (opts.plcUrl) {
    const doc = await currentDoc(opts.plcUrl, did)
    if (doc && getVerificationKey(doc, '#atproto_label') === opts.labelKey && getServiceEndpoint(doc, '#atproto_labeler') === opts.labelerUrl) {
      return result
    }
  }
  if (!did.startsWith('did:plc:')) throw new Error(`${did}: only a did:plc document can be updated through the PDS`)

  let token: string
  if (typeof opts.token === 'string') {
    token = opts.token
  } else {
    await agent.com.atproto.identity.requestPlcOperationSignature()
    if (!opts.token) return { ...result, tokenRequested: true }
    token = await opts.token()
  }
  const rec = await agent.com.atproto.identity.getRecommendedDidCredentials()
  const verificationMethods = { ...((rec.data.verificationMethods as Record<string, string> | undefined) ?? {}), atproto_label: opts.labelKey }
  const services = {
    ...((rec.data.services as Record<string, { type: string; endpoint: string }> | undefined) ?? {}),
    atproto_labeler: { type: 'AtprotoLabeler', endpoint: opts.labelerUrl },
  }
  const signed = await agent.com.atproto.identity.signPlcOperation({ token, verificationMethods, services })
  await agent.com.atproto.identity.submitPlcOperation({ operation: signed.data.operation })
  return { ...result, didDocumentUpdated: true }
}
