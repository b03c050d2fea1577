/**
 * Account signing keys at rest. With PDS_SIGNING_KEY_ENCRYPTION_KEY set, private keys are stored sealed
 * with AES-256-GCM (a random 96-bit nonce per key, the account DID as associated data so a sealed key
 * cannot be moved to another account's row). Keys stored before the setting was turned on are still read,
 * and sealed the next time they are written.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto'

const MAGIC = Buffer.from('SKV1')

export class KeyVault {
  constructor(private readonly key: Buffer | null) {}

  get encrypting(): boolean {
    return this.key !== null
  }

  /** The bytes to store for a private key of `did`. */
  seal(did: string, privateKey: Uint8Array): Uint8Array {
    if (!this.key) return privateKey
    const iv = randomBytes(12)
    const cipher = createCipheriv('aes-256-gcm', this.key, iv)
    cipher.setAAD(Buffer.from(did, 'utf8'))
    const body = Buffer.concat([cipher.update(privateKey), cipher.final()])
    return Buffer.concat([MAGIC, iv, cipher.getAuthTag(), body])
  }

  /** The private key from stored bytes (sealed or, from before encryption was turned on, plain). */
  open(did: string, stored: Uint8Array): Uint8Array {
    const buf = Buffer.from(stored.buffer, stored.byteOffset, stored.byteLength)
    if (buf.length < MAGIC.length + 28 || !buf.subarray(0, 4).equals(MAGIC)) return stored
    if (!this.key) throw new Error(`the signing key of ${did} is encrypted: set PDS_SIGNING_KEY_ENCRYPTION_KEY`)
    const iv = buf.subarray(4, 16)
    const tag = buf.subarray(16, 32)
    const decipher = createDecipheriv('aes-256-gcm', this.key, iv)
    decipher.setAAD(Buffer.from(did, 'utf8'))
    decipher.setAuthTag(tag)
    try {
      return new Uint8Array(Buffer.concat([decipher.update(buf.subarray(32)), decipher.final()]))
    } catch {
      throw new Error(`the signing key of ${did} does not decrypt with PDS_SIGNING_KEY_ENCRYPTION_KEY (wrong key?)`)
    }
  }
}
