/**
 * Signing keypairs (k256 default, p256). Signatures are sha256 + ECDSA, 64-byte compact r‖s, low-S,
 * deterministic (RFC 6979) like the reference implementation.
 * k256 signs through libsecp256k1 when the native binding is available; p256 (and k256 without the
 * binding) signs through @atproto/crypto.
 */
import { randomBytes } from 'node:crypto'
import { P256Keypair, Secp256k1Keypair } from '@atproto/crypto'
import { curveToJwtAlg, formatDidKey, InvalidKeyError, type Curve, type JwtAlg } from './keys.js'
import { nativeDigest, nativeSecp256k1 } from './verify.js'

/** the signature libsecp256k1 writes (read back right after the synchronous call) */
const SIG64 = new Uint8Array(new ArrayBuffer(64))
const NO_OPTIONS = {}

export interface SigningKeypair {
  curve: Curve
  jwtAlg: JwtAlg
  /** did:key of the public key. */
  did(): string
  /** sha256(msg), then ECDSA: 64-byte compact, low-S. */
  sign(msg: Uint8Array): Promise<Uint8Array>
  /** The 32-byte private key. */
  export(): Uint8Array
  /** 33-byte compressed public key. */
  publicKeyBytes(): Uint8Array
}

const CURVE_ORDER: Record<Curve, bigint> = {
  k256: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n,
  p256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n,
}

function privateKeyBytes(privateKey: Uint8Array | string): Uint8Array {
  let bytes: Uint8Array
  if (typeof privateKey === 'string') {
    const hex = privateKey.startsWith('0x') ? privateKey.slice(2) : privateKey
    if (!/^[0-9a-fA-F]{64}$/.test(hex)) throw new InvalidKeyError('private key hex must be 64 hex characters')
    bytes = Uint8Array.from(Buffer.from(hex, 'hex'))
  } else if (privateKey instanceof Uint8Array) {
    bytes = Uint8Array.from(privateKey)
  } else {
    throw new InvalidKeyError('private key must be bytes or a hex string')
  }
  if (bytes.length !== 32) throw new InvalidKeyError('private key must be 32 bytes')
  return bytes
}

function checkScalar(curve: Curve, bytes: Uint8Array): void {
  const d = BigInt('0x' + Buffer.from(bytes).toString('hex'))
  if (d === 0n || d >= CURVE_ORDER[curve]) throw new InvalidKeyError(`private key is out of range for ${curve}`)
}

class Keypair implements SigningKeypair {
  readonly jwtAlg: JwtAlg
  private readonly didKey: string

  constructor(
    readonly curve: Curve,
    private readonly privateKey: Uint8Array,
    private readonly publicKey: Uint8Array,
    private readonly signer: (msg: Uint8Array) => Promise<Uint8Array>,
  ) {
    this.jwtAlg = curveToJwtAlg(curve)
    this.didKey = formatDidKey(curve, publicKey)
  }

  did(): string {
    return this.didKey
  }

  sign(msg: Uint8Array): Promise<Uint8Array> {
    return this.signer(msg)
  }

  export(): Uint8Array {
    return this.privateKey.slice()
  }

  publicKeyBytes(): Uint8Array {
    return this.publicKey.slice()
  }
}

/** Imports a 32-byte private key (bytes or hex). Default curve k256. */
export async function importKeypair(privateKey: Uint8Array | string, curve: Curve = 'k256'): Promise<SigningKeypair> {
  if (curve !== 'k256' && curve !== 'p256') throw new InvalidKeyError(`unsupported curve: ${String(curve)}`)
  const priv = privateKeyBytes(privateKey)
  checkScalar(curve, priv)
  if (curve === 'k256' && nativeSecp256k1) {
    const native = nativeSecp256k1
    const pub = native.publicKeyCreate(priv, true)
    const signer = async (msg: Uint8Array) => {
      // libsecp256k1 signs deterministically (RFC 6979) and always outputs a normalized (low-S) signature,
      // into the module's scratch buffer outside the JS heap (see nativeDigest), copied into the heap
      native.ecdsaSign(nativeDigest(msg), priv, NO_OPTIONS, SIG64)
      return SIG64.slice()
    }
    return new Keypair(curve, priv, Uint8Array.from(pub), signer)
  }
  const lib = curve === 'k256' ? await Secp256k1Keypair.import(priv) : await P256Keypair.import(priv)
  return new Keypair(curve, priv, lib.publicKeyBytes(), (msg) => lib.sign(msg))
}

/** Generates a new exportable keypair (default k256). */
export async function generateKeypair(curve: Curve = 'k256'): Promise<SigningKeypair> {
  for (;;) {
    const priv = randomBytes(32)
    try {
      return await importKeypair(priv, curve)
    } catch (err) {
      // out-of-range scalar: probability ~2^-128 (k256) / 2^-32 (p256); draw again
      if (!(err instanceof InvalidKeyError)) throw err
    }
  }
}
