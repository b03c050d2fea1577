import { base32 } from 'multiformats/bases/base32'
import { sha256, verifySignature, type SigningKeypair } from '@stratos/core/crypto'
import { cborEncode } from '@stratos/core/data'

/** An unsigned did:plc operation (spec v0.3.0). */
export interface UnsignedPlcOperation {
  type: 'plc_operation'
  rotationKeys: string[]
  verificationMethods: Record<string, string>
  alsoKnownAs: string[]
  services: Record<string, { type: string; endpoint: string }>
  prev: string | null
}

export type SignedPlcOperation = UnsignedPlcOperation & { sig: string }

export async function signPlcOperation(op: UnsignedPlcOperation, key: SigningKeypair): Promise<SignedPlcOperation> {
  const { sig: _ignored, ...unsigned } = op as SignedPlcOperation
  const signature = await key.sign(cborEncode(unsigned))
  return { ...unsigned, sig: Buffer.from(signature).toString('base64url') }
}

/** True when one of `keys` (did:keys) signed the op (its `sig` over the DAG-CBOR of the op without `sig`). */
export function plcOpSignedByOneOf(op: SignedPlcOperation, keys: string[]): boolean {
  if (typeof op.sig !== 'string' || !/^[A-Za-z0-9_-]+$/.test(op.sig)) return false
  const { sig, ...unsigned } = op
  let bytes: Uint8Array
  try {
    bytes = cborEncode(unsigned)
  } catch {
    return false
  }
  const sigBytes = Buffer.from(sig, 'base64url')
  return keys.some((key) => {
    try {
      return verifySignature(key, bytes, sigBytes)
    } catch {
      return false
    }
  })
}

/** did:plc identifier: first 24 chars of base32(sha256(dag-cbor(signed genesis op))). */
export function didForGenesisOp(op: SignedPlcOperation): string {
  const hash = sha256(cborEncode(op))
  return `did:plc:${base32.baseEncode(hash).slice(0, 24)}`
}

export interface AtprotoGenesisInput {
  /** did:keys, highest authority first */
  rotationKeys: string[]
  signingKey: string
  handle: string
  pdsEndpoint: string
}

export async function createGenesisOp(
  input: AtprotoGenesisInput,
  signer: SigningKeypair,
): Promise<{ did: string; op: SignedPlcOperation }> {
  const op = await signPlcOperation(
    {
      type: 'plc_operation',
      rotationKeys: input.rotationKeys,
      verificationMethods: { atproto: input.signingKey },
      alsoKnownAs: [`at://${input.handle}`],
      services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: input.pdsEndpoint } },
      prev: null,
    },
    signer,
  )
  return { did: didForGenesisOp(op), op }
}

export class PlcClientError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message)
    this.name = 'PlcClientError'
  }
}

/** Minimal client for the PLC directory's HTTP API. */
export class PlcClient {
  constructor(
    readonly url: string,
    private readonly timeoutMs = 10_000,
  ) {}

  async submit(did: string, op: SignedPlcOperation): Promise<void> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(op),
      signal: AbortSignal.timeout(this.timeoutMs),
    })
    if (!res.ok) {
      const text = await res.text().catch(() => '')
      throw new PlcClientError(res.status, `PLC directory refused the operation (${res.status}): ${text.slice(0, 300)}`)
    }
  }

  /** The DID's operations in order, nullified ones left out (`/:did/log`); null when the DID is unknown. */
  async getLog(did: string): Promise<Array<SignedPlcOperation | { type: string; signingKey?: string }> | null> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}/log`, {
      signal: AbortSignal.timeout(this.timeoutMs),
    })
    if (res.status === 404) return null
    if (!res.ok) throw new PlcClientError(res.status, `PLC directory error ${res.status}`)
    return (await res.json()) as Array<SignedPlcOperation | { type: string; signingKey?: string }>
  }

  async getLastOp(did: string): Promise<SignedPlcOperation | null> {
    const res = await fetch(`${this.url}/${encodeURIComponent(did)}/log/last`, {
      signal: AbortSignal.timeout(this.timeoutMs),
    })
    if (res.status === 404) return null
    if (!res.ok) throw new PlcClientError(res.status, `PLC directory error ${res.status}`)
    return (await res.json()) as SignedPlcOperation
  }
}
