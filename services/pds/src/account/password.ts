import { randomBytes, randomInt, scrypt, timingSafeEqual } from 'node:crypto'
import { sha256 } from '@stratos/core/crypto'

/** Longest password accepted when setting one; longer input is refused rather than silently hashed. */
export const MAX_PASSWORD_LENGTH = 256

const KEY_LENGTH = 64

const derive = (password: string, salt: string): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    scrypt(password.normalize('NFKC'), salt, KEY_LENGTH, { N: 16384, r: 8, p: 1 }, (err, key) =>
      err ? reject(err) : resolve(key),
    )
  })

/** scrypt hash stored as `salt:hash` (hex), the same layout the reference PDS uses. */
export async function hashPassword(password: string, salt = randomBytes(16).toString('hex')): Promise<string> {
  const key = await derive(password, salt)
  return `${salt}:${key.toString('hex')}`
}

export async function verifyPassword(password: string, stored: string): Promise<boolean> {
  const idx = stored.indexOf(':')
  if (idx < 1) return false
  const salt = stored.slice(0, idx)
  const expected = Buffer.from(stored.slice(idx + 1), 'hex')
  if (expected.length !== KEY_LENGTH) return false
  const actual = await derive(password, salt)
  return timingSafeEqual(actual, expected)
}

/** App passwords are salted with the account DID, so one lookup per (did, name) verifies them. */
export function hashAppPassword(did: string, password: string): Promise<string> {
  return hashPassword(password, Buffer.from(sha256(did).slice(0, 16)).toString('hex'))
}

const APP_PASSWORD_CHARS = 'abcdefghijklmnopqrstuvwxyz234567'

/** xxxx-xxxx-xxxx-xxxx from an unambiguous alphabet. */
export function generateAppPassword(): string {
  const groups: string[] = []
  for (let g = 0; g < 4; g++) {
    let s = ''
    for (let i = 0; i < 4; i++) s += APP_PASSWORD_CHARS[randomInt(APP_PASSWORD_CHARS.length)]
    groups.push(s)
  }
  return groups.join('-')
}

export const APP_PASSWORD_REGEX = /^[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}-[a-z2-7]{4}$/
