import fs from 'node:fs'
import { randomBytes } from 'node:crypto'
import { describe, expect, it } from 'vitest'
import { ConfigError, readConfigFromEnv } from '../src/config.js'

const base = {
  PDS_HOSTNAME: 'pds.example.com',
  PDS_DATA_DIRECTORY: '/var/pds',
  PDS_BLOBSTORE_DISK_LOCATION: '/var/pds/blocks',
  PDS_JWT_SECRET: randomBytes(32).toString('hex'),
  PDS_ADMIN_PASSWORD: randomBytes(16).toString('hex'),
  PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: randomBytes(32).toString('hex'),
}

const problemsOf = (env: Record<string, string>): string[] => {
  try {
    readConfigFromEnv(env)
  } catch (err) {
    if (err instanceof ConfigError) return err.problems
    throw err
  }
  return []
}

describe('config', () => {
  it('reads the reference PDS variables with their defaults', () => {
    const cfg = readConfigFromEnv(base)
    expect(cfg.service.port).toBe(2583)
    expect(cfg.service.publicUrl).toBe('https://pds.example.com')
    expect(cfg.service.did).toBe('did:web:pds.example.com')
    expect(cfg.identity.serviceHandleDomains).toEqual(['.pds.example.com'])
    expect(cfg.identity.plcUrl).toBe('https://plc.directory')
    expect(cfg.invites.required).toBe(true)
    expect(cfg.invites.interval).toBeNull()
    expect(cfg.db.didCacheDbPath).toBe('/var/pds/did_cache.sqlite')
    expect(cfg.subscription.maxBuffer).toBe(500)
    expect(cfg.service.blobUploadLimit).toBe(5 * 1024 * 1024)
    expect(cfg.service.acceptingImports).toBe(true)
    expect(cfg.service.maxImportSize).toBe(100 * 1024 * 1024)
    expect(cfg.db.accountDbPath).toBe('/var/pds/account.sqlite')
    expect(cfg.blobstore.location).toBe('/var/pds/blocks')
    // production: rate limits on unless turned off
    expect(cfg.rateLimits.enabled).toBe(true)
    expect(cfg.tempBlobQuota).toEqual({ maxCount: 64, maxBytes: 256 * 1024 * 1024 })
    expect(cfg.bskyAppView).toBeNull()
    expect(cfg.crawlers).toEqual([])
  })

  it('parses lists, booleans and numbers', () => {
    const cfg = readConfigFromEnv({
      ...base,
      PDS_PORT: '3000',
      PDS_SERVICE_HANDLE_DOMAINS: '.a.example.com, .b.example.com',
      PDS_INVITE_REQUIRED: 'false',
      PDS_CRAWLERS: 'https://bsky.network,https://relay.example.com/',
      PDS_BSKY_APP_VIEW_URL: 'https://api.bsky.app',
      PDS_BSKY_APP_VIEW_DID: 'did:web:api.bsky.app',
      PDS_RATE_LIMITS_ENABLED: 'true',
      PDS_BLOB_UPLOAD_LIMIT: '1000',
      PDS_ACCEPTING_REPO_IMPORTS: 'false',
      PDS_MAX_REPO_IMPORT_SIZE: '2000',
      PDS_INVITE_INTERVAL: '604800000',
      PDS_DID_CACHE_DB_LOCATION: '/srv/did-cache.sqlite',
      PDS_MAX_SUBSCRIPTION_BUFFER: '50',
    })
    expect(cfg.invites.interval).toBe(604800000)
    expect(cfg.db.didCacheDbPath).toBe('/srv/did-cache.sqlite')
    expect(cfg.subscription.maxBuffer).toBe(50)
    expect(problemsOf({ ...base, PDS_INVITE_INTERVAL: '0' })[0]).toMatch(/PDS_INVITE_INTERVAL/)
    expect(cfg.service.port).toBe(3000)
    expect(cfg.identity.serviceHandleDomains).toEqual(['.a.example.com', '.b.example.com'])
    expect(cfg.invites.required).toBe(false)
    expect(cfg.crawlers).toEqual(['https://bsky.network', 'https://relay.example.com'])
    expect(cfg.bskyAppView).toEqual({ url: 'https://api.bsky.app', did: 'did:web:api.bsky.app' })
    expect(cfg.rateLimits.enabled).toBe(true)
    expect(cfg.service.blobUploadLimit).toBe(1000)
    expect(cfg.service.acceptingImports).toBe(false)
    expect(cfg.service.maxImportSize).toBe(2000)
  })

  it('reports every problem at once, naming the variable', () => {
    const problems = problemsOf({ PDS_PORT: 'abc', PDS_INVITE_REQUIRED: 'maybe', LOG_LEVEL: 'loud' })
    const text = problems.join('\n')
    for (const name of [
      'PDS_HOSTNAME',
      'PDS_DATA_DIRECTORY',
      'PDS_BLOBSTORE_DISK_LOCATION',
      'PDS_JWT_SECRET',
      'PDS_ADMIN_PASSWORD',
      'PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX',
      'PDS_PORT',
      'PDS_INVITE_REQUIRED',
      'LOG_LEVEL',
    ]) {
      expect(text).toContain(name)
    }
  })

  it('allows http, loopback and .test only in dev mode', () => {
    expect(problemsOf({ ...base, PDS_DID_PLC_URL: 'http://127.0.0.1:2582' }).join()).toMatch(/PDS_DID_PLC_URL.*PDS_DEV_MODE/)
    expect(problemsOf({ ...base, PDS_HOSTNAME: 'localhost' }).join()).toMatch(/loopback.*PDS_DEV_MODE/)
    expect(problemsOf({ ...base, PDS_SERVICE_HANDLE_DOMAINS: '.test' }).join()).toMatch(/reserved for testing/)
    const dev = readConfigFromEnv({ ...base, PDS_HOSTNAME: 'localhost', PDS_DEV_MODE: 'true', PDS_DID_PLC_URL: 'http://127.0.0.1:2582' })
    expect(dev.service.publicUrl).toBe('http://localhost:2583')
    expect(dev.identity.serviceHandleDomains).toEqual(['.test'])
    expect(dev.service.bindHost).toBe('127.0.0.1')
  })

  it('refuses malformed values', () => {
    expect(problemsOf({ ...base, PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: 'xyz' }).join()).toMatch(/64 hex/)
    expect(problemsOf({ ...base, PDS_SERVICE_HANDLE_DOMAINS: 'example.com' }).join()).toMatch(/start with a dot/)
    expect(problemsOf({ ...base, PDS_BSKY_APP_VIEW_URL: 'https://api.bsky.app' }).join()).toMatch(/set together/)
    expect(problemsOf({ ...base, PDS_HOSTNAME: 'https://pds.example.com' }).join()).toMatch(/bare host name/)
    expect(problemsOf({ ...base, PDS_EMAIL_SMTP_URL: 'smtp://mail.example.com' }).join()).toMatch(/set together/)
  })

  it('refuses missing, short, repetitive and published secrets outside dev mode', () => {
    const secretProblems = (env: Record<string, string>) => problemsOf({ ...base, ...env }).join('\n')
    expect(secretProblems({ PDS_JWT_SECRET: 'secret' })).toMatch(/PDS_JWT_SECRET is a sample value/)
    expect(secretProblems({ PDS_JWT_SECRET: 'a1b2c3d4e5f6' })).toMatch(/PDS_JWT_SECRET is too short \(12 characters, at least 32/)
    expect(secretProblems({ PDS_JWT_SECRET: 'ab'.repeat(20) })).toMatch(/PDS_JWT_SECRET has too few distinct characters/)
    expect(secretProblems({ PDS_ADMIN_PASSWORD: 'admin' })).toMatch(/PDS_ADMIN_PASSWORD is a sample value/)
    expect(secretProblems({ PDS_ADMIN_PASSWORD: 'hunter2hunter2' })).toMatch(/PDS_ADMIN_PASSWORD is too short/)
    expect(secretProblems({ PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: 'a'.repeat(64) })).toMatch(/ROTATION_KEY.*too few distinct/)
    expect(secretProblems({ PDS_JWT_SECRET: '' })).toMatch(/PDS_JWT_SECRET is required/)
    // dev mode keeps accepting anything (the dev network and tests generate their own)
    expect(problemsOf({ ...base, PDS_DEV_MODE: 'true', PDS_JWT_SECRET: 'secret', PDS_ADMIN_PASSWORD: 'admin' })).toEqual([])
  })

  it("refuses every secret default published in the repository's compose file", () => {
    const compose = fs.readFileSync(new URL('../../../docker-compose.yml', import.meta.url), 'utf8')
    const samples = [...compose.matchAll(/(PDS_JWT_SECRET|PDS_ADMIN_PASSWORD|PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX): \$\{\w+:-([^}]+)\}/g)]
    expect(samples.map((m) => m[1]).sort()).toEqual(['PDS_ADMIN_PASSWORD', 'PDS_JWT_SECRET', 'PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX'])
    for (const [, name, value] of samples) {
      expect(problemsOf({ ...base, [name!]: value! }).join('\n')).toContain(`${name} is a sample value`)
    }
  })

  it('warns about PDS_* variables it does not know (a misspelling is not silently ignored)', () => {
    const cfg = readConfigFromEnv({ ...base, PDS_INVITES_REQUIRED: 'false', PDS_CRAWLERS: 'https://bsky.network', OTHER_THING: 'x' })
    expect(cfg.warnings).toEqual([expect.stringMatching(/^unknown variable PDS_INVITES_REQUIRED is ignored/)])
    expect(readConfigFromEnv(base).warnings).toEqual([])
  })

  it('reads the report service', () => {
    const cfg = readConfigFromEnv({ ...base, PDS_REPORT_SERVICE_URL: 'https://mod.bsky.app/', PDS_REPORT_SERVICE_DID: 'did:plc:ar7c4by46qjdydhdevvrndac' })
    expect(cfg.reportService).toEqual({ url: 'https://mod.bsky.app', did: 'did:plc:ar7c4by46qjdydhdevvrndac' })
    expect(problemsOf({ ...base, PDS_REPORT_SERVICE_URL: 'https://mod.bsky.app' }).join()).toMatch(/set together/)
  })

  it('reads the OAuth settings: issuer, signing key, branding, trusted clients', () => {
    const cfg = readConfigFromEnv(base)
    expect(cfg.oauth).toMatchObject({ issuer: 'https://pds.example.com', signingKeyHex: null, trustedClients: [] })
    const key = randomBytes(32).toString('hex')
    const set = readConfigFromEnv({
      ...base,
      PDS_OAUTH_ISSUER: 'https://auth.example.com',
      PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX: key,
      PDS_PRIMARY_COLOR: '#006aff',
      PDS_LOGO_URL: 'https://example.com/logo.png',
      PDS_SUPPORT_URL: 'https://example.com/help',
      PDS_OAUTH_TRUSTED_CLIENTS: 'https://app.example.com/client-metadata.json',
    })
    expect(set.oauth).toEqual({
      issuer: 'https://auth.example.com',
      signingKeyHex: key,
      primaryColor: 'rgb(0, 106, 255)',
      logoUrl: 'https://example.com/logo.png',
      supportUrl: 'https://example.com/help',
      trustedClients: ['https://app.example.com/client-metadata.json'],
    })
    const problems = problemsOf({
      ...base,
      PDS_OAUTH_ISSUER: 'http://auth.example.com',
      PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX: 'abc',
      PDS_PRIMARY_COLOR: 'blue',
      PDS_OAUTH_TRUSTED_CLIENTS: 'http://app.example.com/client-metadata.json',
    })
    for (const name of ['PDS_OAUTH_ISSUER', 'PDS_OAUTH_SIGNING_KEY_P256_PRIVATE_KEY_HEX', 'PDS_PRIMARY_COLOR', 'PDS_OAUTH_TRUSTED_CLIENTS']) {
      expect(problems.some((p) => p.includes(name)), name).toBe(true)
    }
  })

  it('refuses an http:// OAuth issuer that is not on a loopback host (a dev PDS named pds.test, as in docker-compose.yml)', () => {
    // the public URL http://pds.test:2583 would be the issuer: @atproto/oauth-provider would refuse it at start
    const dev = { ...base, PDS_HOSTNAME: 'pds.test', PDS_DEV_MODE: 'true', PDS_SERVICE_HANDLE_DOMAINS: '.pds.test' }
    const problems = problemsOf(dev)
    expect(problems).toHaveLength(1)
    expect(problems[0]).toContain('PDS_OAUTH_ISSUER')
    expect(problems[0]).toContain('http://pds.test:2583')
    // what docker-compose.yml sets: the PDS as the host reaches it
    expect(readConfigFromEnv({ ...dev, PDS_OAUTH_ISSUER: 'http://127.0.0.1:2583' }).oauth.issuer).toBe('http://127.0.0.1:2583')
    expect(readConfigFromEnv({ ...base, PDS_HOSTNAME: 'localhost', PDS_DEV_MODE: 'true' }).oauth.issuer).toBe('http://localhost:2583')
  })
})
