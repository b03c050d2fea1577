import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { generateKeypair } from '@stratos/core/crypto'
import { openAccountDb } from '../src/account/db.js'
import { ensureServiceHandleConstraints, normalizeAndValidateHandle } from '../src/account/handle.js'
import { AccountManager } from '../src/account/manager.js'
import { AccountSettings } from '../src/account/settings.js'
import { KeyVault } from '../src/account/key-vault.js'
import { generateAppPassword, hashPassword, verifyPassword, APP_PASSWORD_REGEX } from '../src/account/password.js'
import { createGenesisOp, didForGenesisOp } from '../src/account/plc.js'
import { AuthScope, SessionTokens, TokenError } from '../src/account/tokens.js'
import { XRPCError } from '../src/errors.js'
import { verifySignature } from '@stratos/core/crypto'
import { cborEncode } from '@stratos/core/data'

const SERVICE_DID = 'did:web:pds.test'

describe('passwords', () => {
  it('verifies the right password and refuses others', async () => {
    const stored = await hashPassword('correct horse')
    expect(stored).toMatch(/^[0-9a-f]{32}:[0-9a-f]{128}$/)
    expect(await verifyPassword('correct horse', stored)).toBe(true)
    expect(await verifyPassword('correct horsf', stored)).toBe(false)
    expect(await verifyPassword('correct horse', 'garbage')).toBe(false)
  })
  it('generates app passwords in the xxxx-xxxx-xxxx-xxxx form', () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20; i++) {
      const p = generateAppPassword()
      expect(p).toMatch(APP_PASSWORD_REGEX)
      seen.add(p)
    }
    expect(seen.size).toBe(20)
  })
})

describe('session tokens', () => {
  const tokens = new SessionTokens('secret-1', SERVICE_DID, 7200, 90 * 86400)
  it('round-trips an access token', () => {
    const jwt = tokens.createAccessToken('did:plc:abc', AuthScope.Access)
    const header = JSON.parse(Buffer.from(jwt.split('.')[0]!, 'base64url').toString())
    expect(header).toEqual({ typ: 'at+jwt', alg: 'HS256' })
    const p = tokens.verify(jwt, 'at+jwt')
    expect(p.sub).toBe('did:plc:abc')
    expect(p.aud).toBe(SERVICE_DID)
    expect(p.scope).toBe(AuthScope.Access)
    expect(p.exp - p.iat).toBe(7200)
  })
  it('refuses a refresh token as access and the reverse', () => {
    const refresh = tokens.createRefreshToken('did:plc:abc', 'tid1').jwt
    expect(() => tokens.verify(refresh, 'at+jwt')).toThrow(/Invalid token type/)
    const access = tokens.createAccessToken('did:plc:abc', AuthScope.Access)
    expect(() => tokens.verify(access, 'refresh+jwt')).toThrow(/Invalid token type/)
  })
  it('refuses tokens signed with another secret, tampered, or expired', () => {
    const other = new SessionTokens('secret-2', SERVICE_DID, 7200, 100)
    const forged = other.createAccessToken('did:plc:abc', AuthScope.Access)
    expect(() => tokens.verify(forged, 'at+jwt')).toThrowError(TokenError)
    const good = tokens.createAccessToken('did:plc:abc', AuthScope.Access)
    const [h, , s] = good.split('.')
    const body = Buffer.from(JSON.stringify({ scope: AuthScope.Access, sub: 'did:plc:evil', aud: SERVICE_DID, iat: 1, exp: 9e9 })).toString('base64url')
    expect(() => tokens.verify(`${h}.${body}.${s}`, 'at+jwt')).toThrow(/could not be verified/)
    const old = tokens.createAccessToken('did:plc:abc', AuthScope.Access, Date.now() - 8000 * 1000)
    try {
      tokens.verify(old, 'at+jwt')
      expect.unreachable()
    } catch (err) {
      expect((err as TokenError).reason).toBe('expired')
    }
    const noneAlg = `${Buffer.from(JSON.stringify({ typ: 'at+jwt', alg: 'none' })).toString('base64url')}.${body}.`
    expect(() => tokens.verify(noneAlg, 'at+jwt')).toThrowError(TokenError)
  })
  it('checks type and expiry again on every use of a token it has verified before', () => {
    const jwt = tokens.createAccessToken('did:plc:again', AuthScope.Access)
    const first = tokens.verify(jwt, 'at+jwt')
    // the remembered verification: same payload, and a caller changing it does not change the next one
    ;(first as { sub: string }).sub = 'did:plc:changed'
    expect(tokens.verify(jwt, 'at+jwt').sub).toBe('did:plc:again')
    expect(() => tokens.verify(jwt, 'refresh+jwt')).toThrow(/Invalid token type/)
    try {
      tokens.verify(jwt, 'at+jwt', { now: Date.now() + 7201 * 1000 })
      expect.unreachable()
    } catch (err) {
      expect((err as TokenError).reason).toBe('expired')
    }
    expect(tokens.verify(jwt, 'at+jwt', { now: Date.now() + 7201 * 1000, allowExpired: true }).sub).toBe('did:plc:again')
    // a tampered copy of a remembered token is checked in full
    const [h, b, s] = jwt.split('.')
    const flipped = s!.startsWith('A') ? `B${s!.slice(1)}` : `A${s!.slice(1)}`
    expect(() => tokens.verify(`${h}.${b}.${flipped}`, 'at+jwt')).toThrow(/could not be verified/)
  })
})

describe('handles', () => {
  it('enforces service-domain rules', () => {
    const domains = ['.pds.test']
    expect(normalizeAndValidateHandle('Alice.PDS.test', { devMode: true })).toBe('alice.pds.test')
    expect(() => normalizeAndValidateHandle('alice.pds.test', { devMode: false })).toThrow(/TLD/)
    expect(() => normalizeAndValidateHandle('not a handle', { devMode: true })).toThrow(/Invalid handle/)
    expect(() => ensureServiceHandleConstraints('al.pds.test', domains)).toThrow(/too short/)
    expect(() => ensureServiceHandleConstraints('a.b.pds.test', domains)).toThrow(/Invalid characters/)
    expect(() => ensureServiceHandleConstraints('abcdefghijklmnopqrstu.pds.test', domains)).toThrow(/too long/)
    expect(() => ensureServiceHandleConstraints('admin.pds.test', domains)).toThrow(/Reserved/)
    expect(() => ensureServiceHandleConstraints('alice.other.test', domains)).toThrow(/must end with/)
    expect(() => ensureServiceHandleConstraints('alice.pds.test', domains)).not.toThrow()
  })
})

describe('did:plc genesis', () => {
  it('signs the op with the rotation key and derives the DID from it', async () => {
    const rotation = await generateKeypair('k256')
    const signing = await generateKeypair('k256')
    const { did, op } = await createGenesisOp(
      { rotationKeys: [rotation.did()], signingKey: signing.did(), handle: 'alice.pds.test', pdsEndpoint: 'http://localhost:1' },
      rotation,
    )
    expect(did).toMatch(/^did:plc:[a-z2-7]{24}$/)
    expect(didForGenesisOp(op)).toBe(did)
    const { sig, ...unsigned } = op
    expect(verifySignature(rotation.did(), cborEncode(unsigned), Buffer.from(sig, 'base64url'))).toBe(true)
    expect(op.alsoKnownAs).toEqual(['at://alice.pds.test'])
    expect(op.verificationMethods.atproto).toBe(signing.did())
  })
})

describe('AccountManager', () => {
  let dir: string
  let close: () => Promise<void>
  let mgr: AccountManager
  let noGrace: AccountManager
  const tokens = new SessionTokens('secret', SERVICE_DID, 7200, 86400)

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-acct-'))
    const database = await openAccountDb(path.join(dir, 'account.sqlite'))
    close = database.close
    mgr = new AccountManager(database.db, tokens, { refreshGraceMs: 60_000, hostname: 'pds.test' })
    noGrace = new AccountManager(database.db, tokens, { refreshGraceMs: 0, hostname: 'pds.test' })
    const key = await generateKeypair()
    await mgr.createAccount({
      did: 'did:plc:alice',
      handle: 'alice.pds.test',
      email: 'Alice@Example.com',
      password: 'alice-pass',
      signingKey: key,
      repoCid: 'bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5nhncmxvrnsjz5e',
      repoRev: '3jzfcijpj2z2a',
    })
  })
  afterAll(async () => {
    await close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('logs in by handle, email or DID, and refuses a wrong password', async () => {
    for (const id of ['alice.pds.test', 'ALICE@example.com', 'did:plc:alice']) {
      const { account, appPassword } = await mgr.login(id, 'alice-pass')
      expect(account.did).toBe('did:plc:alice')
      expect(appPassword).toBeNull()
    }
    await expect(mgr.login('alice.pds.test', 'nope')).rejects.toMatchObject({ status: 401 })
    await expect(mgr.login('bob.pds.test', 'alice-pass')).rejects.toMatchObject({ status: 401 })
  })

  it('keeps the signing key retrievable', async () => {
    const key = await mgr.getSigningKey('did:plc:alice')
    expect(key?.did()).toMatch(/^did:key:zQ3s/)
  })

  it('logs in with an app password, which gives the appPass scope', async () => {
    const created = await mgr.createAppPassword('did:plc:alice', 'phone', false)
    const { appPassword } = await mgr.login('alice.pds.test', created.password)
    expect(appPassword).toEqual({ name: 'phone', privileged: false })
    const session = await mgr.createSession('did:plc:alice', appPassword)
    expect(tokens.verify(session.accessJwt, 'at+jwt').scope).toBe(AuthScope.AppPass)
    await expect(mgr.createAppPassword('did:plc:alice', 'phone', false)).rejects.toBeInstanceOf(XRPCError)
    expect((await mgr.listAppPasswords('did:plc:alice')).map((p) => p.name)).toEqual(['phone'])
    const refreshId = tokens.verify(session.refreshJwt, 'refresh+jwt').jti!
    await mgr.revokeAppPassword('did:plc:alice', 'phone')
    await expect(mgr.login('alice.pds.test', created.password)).rejects.toMatchObject({ status: 401 })
    await expect(mgr.rotateRefreshToken(refreshId)).rejects.toMatchObject({ error: 'ExpiredToken' })
  })

  it('rotates refresh tokens; a retry within the grace gets the same successor', async () => {
    const s = await mgr.createSession('did:plc:alice', null)
    const id1 = tokens.verify(s.refreshJwt, 'refresh+jwt').jti!
    const r1 = await mgr.rotateRefreshToken(id1)
    const id2 = tokens.verify(r1.refreshJwt, 'refresh+jwt').jti!
    expect(id2).not.toBe(id1)
    const retry = await mgr.rotateRefreshToken(id1)
    expect(tokens.verify(retry.refreshJwt, 'refresh+jwt').jti).toBe(id2)
    const r2 = await mgr.rotateRefreshToken(id2)
    expect(tokens.verify(r2.refreshJwt, 'refresh+jwt').jti).not.toBe(id2)
  })

  it('revokes the whole family when a spent token comes back after the grace', async () => {
    const s = await noGrace.createSession('did:plc:alice', null)
    const id1 = tokens.verify(s.refreshJwt, 'refresh+jwt').jti!
    const r1 = await noGrace.rotateRefreshToken(id1)
    const id2 = tokens.verify(r1.refreshJwt, 'refresh+jwt').jti!
    await new Promise((r) => setTimeout(r, 5))
    await expect(noGrace.rotateRefreshToken(id1)).rejects.toMatchObject({ error: 'ExpiredToken' })
    // the legitimate successor is revoked too
    await expect(noGrace.rotateRefreshToken(id2)).rejects.toMatchObject({ error: 'ExpiredToken' })
  })

  it('consumes invite codes', async () => {
    const [{ codes }] = await mgr.createInviteCodes({ forAccounts: ['admin'], count: 1, useCount: 1, createdBy: 'admin' })
    const code = codes[0]!
    await mgr.ensureInviteAvailable(code)
    const key = await generateKeypair()
    await mgr.createAccount({
      did: 'did:plc:bob',
      handle: 'bob.pds.test',
      email: 'bob@example.com',
      password: 'bob-pass',
      signingKey: key,
      repoCid: 'bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5nhncmxvrnsjz5e',
      repoRev: '3jzfcijpj2z2a',
      inviteCode: code,
    })
    await expect(mgr.ensureInviteAvailable(code)).rejects.toMatchObject({ error: 'InvalidInviteCode' })
    await expect(mgr.ensureInviteAvailable('pds-test-nope-nope')).rejects.toMatchObject({ error: 'InvalidInviteCode' })
  })
})

describe('AccountManager repo heads (the write path notes them, written once per event-loop turn)', () => {
  let dir: string
  let close: () => Promise<void>
  let mgr: AccountManager
  let sqlite: import('better-sqlite3').Database
  const tokens = new SessionTokens('secret', SERVICE_DID, 7200, 86400)
  const CID0 = 'bafyreib2rxk3rybk3aobmv5cjuql3bm2twh4jo5uxgf5nhncmxvrnsjz5e'
  const stored = (did: string) => sqlite.prepare('SELECT cid, rev FROM repo_root WHERE did = ?').get(did) as { cid: string; rev: string } | undefined
  const nextTurn = () => new Promise((r) => setImmediate(r))
  const create = async (did: string, rev = '3jzfcijpj2z2a') =>
    mgr.createAccount({ did, handle: `${did.slice(8)}.pds.test`, email: null, password: null, signingKey: await generateKeypair(), repoCid: CID0, repoRev: rev })

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-acct-roots-'))
    const database = await openAccountDb(path.join(dir, 'account.sqlite'))
    close = database.close
    sqlite = database.sqlite!
    mgr = new AccountManager(database.db, tokens, { refreshGraceMs: 60_000, hostname: 'pds.test', sqlite })
    await create('did:plc:carol')
    await create('did:plc:dave')
  })
  afterAll(async () => {
    await close()
    fs.rmSync(dir, { recursive: true, force: true })
  })

  it('serves the last noted head to readers in the same turn, and writes it at the end of the turn', async () => {
    mgr.updateRepoRootSync('did:plc:carol', 'bafy-c1', '3kaaaaaaaaaa1')
    mgr.updateRepoRootSync('did:plc:dave', 'bafy-d1', '3kaaaaaaaaaa1')
    mgr.updateRepoRootSync('did:plc:carol', 'bafy-c2', '3kaaaaaaaaaa2')
    expect(stored('did:plc:carol')).toEqual({ cid: CID0, rev: '3jzfcijpj2z2a' })
    await nextTurn()
    expect(stored('did:plc:carol')).toEqual({ cid: 'bafy-c2', rev: '3kaaaaaaaaaa2' })
    expect(stored('did:plc:dave')).toEqual({ cid: 'bafy-d1', rev: '3kaaaaaaaaaa1' })

    mgr.updateRepoRootSync('did:plc:carol', 'bafy-c3', '3kaaaaaaaaaa3')
    expect(await mgr.getRepoRoot('did:plc:carol')).toEqual({ cid: 'bafy-c3', rev: '3kaaaaaaaaaa3' })
    mgr.updateRepoRootSync('did:plc:dave', 'bafy-d2', '3kaaaaaaaaaa2')
    const listed = await mgr.listRepos({ limit: 10 })
    expect(listed.find((r) => r.did === 'did:plc:dave')).toMatchObject({ head: 'bafy-d2', rev: '3kaaaaaaaaaa2' })
  })

  it('lets a later head written directly (import, recovery) win over one still noted', async () => {
    mgr.updateRepoRootSync('did:plc:carol', 'bafy-old', '3kaaaaaaaaab1')
    await mgr.updateRepoRoot('did:plc:carol', 'bafy-new', '3kaaaaaaaaab2')
    await nextTurn()
    expect(stored('did:plc:carol')).toEqual({ cid: 'bafy-new', rev: '3kaaaaaaaaab2' })
  })

  it('adds no row for an account deleted before the flush, and does not carry a head over to a new account of the DID', async () => {
    await create('did:plc:erin')
    mgr.updateRepoRootSync('did:plc:erin', 'bafy-e1', '3kaaaaaaaaac1')
    sqlite.prepare('DELETE FROM repo_root WHERE did = ?').run('did:plc:erin')
    await nextTurn()
    expect(stored('did:plc:erin')).toBeUndefined()

    mgr.updateRepoRootSync('did:plc:erin', 'bafy-e2', '3kaaaaaaaaac2')
    await new AccountSettings(mgr.db, new KeyVault(null)).deleteAccount('did:plc:erin')
    await create('did:plc:erin', '3kaaaaaaaaac9')
    await nextTurn()
    expect(stored('did:plc:erin')).toEqual({ cid: CID0, rev: '3kaaaaaaaaac9' })
  })
})
