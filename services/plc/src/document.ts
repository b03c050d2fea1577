import { parseDidKey } from '@stratos/core/crypto'
import type { DidDocument, DocumentData } from './types.js'

const BASE_CONTEXT = ['https://www.w3.org/ns/did/v1', 'https://w3id.org/security/multikey/v1']
const CURVE_CONTEXT: Record<string, string> = {
  p256: 'https://w3id.org/security/suites/ecdsa-2019/v1',
  k256: 'https://w3id.org/security/suites/secp256k1-2019/v1',
}

/**
 * Renders DID state as a DID document: verification methods become Multikey entries `<did>#<name>`, services
 * become `#<name>` entries, rotation keys are not shown.
 */
export function formatDidDocument(data: DocumentData): DidDocument {
  const context = [...BASE_CONTEXT]
  const verificationMethod: DidDocument['verificationMethod'] = []
  for (const [name, key] of Object.entries(data.verificationMethods)) {
    let curveContext: string | undefined
    try {
      curveContext = CURVE_CONTEXT[parseDidKey(key).curve]
    } catch {
      // other key types are allowed in verificationMethods: rendered as Multikey without a suite context
    }
    if (curveContext && !context.includes(curveContext)) context.push(curveContext)
    verificationMethod.push({
      id: `${data.did}#${name}`,
      type: 'Multikey',
      controller: data.did,
      publicKeyMultibase: key.replace(/^did:key:/, ''),
    })
  }
  const service: DidDocument['service'] = Object.entries(data.services).map(([name, svc]) => ({
    id: `#${name}`,
    type: svc.type,
    serviceEndpoint: svc.endpoint,
  }))
  return { '@context': context, id: data.did, alsoKnownAs: [...data.alsoKnownAs], verificationMethod, service }
}
