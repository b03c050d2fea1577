import { spawnSync } from 'node:child_process'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { PassThrough } from 'node:stream'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readConfigFromEnv } from '@stratos/pds'
import { main } from '../src/main.js'
import { parseEnvFile } from '../src/commands/pds-init.js'
import type { Io } from '../src/util/io.js'
import { ROOT, runBin, runCli } from './helpers.js'

let dir: string
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-pds-init-'))
})
afterAll(() => {
  fs.rmSync(dir, { recursive: true, force: true })
})

describe('stratos pds init', () => {
  it('writes a production configuration for the public network with generated secrets, mode 0600, and prints the DNS records', async () => {
    const file = path.join(dir, 'deploy', 'pds.env')
    const r = await runCli(['pds', 'init', '--hostname', 'PDS.Example.com', '--admin-email', 'op@example.com', '--env-file', file])
    expect(r.code, r.stderr).toBe(0)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    const env = parseEnvFile(fs.readFileSync(file, 'utf8'))
    expect(env).toMatchObject({
      PDS_HOSTNAME: 'pds.example.com',
      PDS_ADMIN_EMAIL: 'op@example.com',
      PDS_DID_PLC_URL: 'https://plc.directory',
      PDS_BSKY_APP_VIEW_URL: 'https://api.bsky.app',
      PDS_BSKY_APP_VIEW_DID: 'did:web:api.bsky.app',
      PDS_CRAWLERS: 'https://bsky.network',
      PDS_REPORT_SERVICE_URL: 'https://mod.bsky.app',
      PDS_REPORT_SERVICE_DID: 'did:plc:ar7c4by46qjdydhdevvrndac',
      PDS_DATA_DIRECTORY: '/data',
      PDS_BLOBSTORE_DISK_LOCATION: '/data/blocks',
    })
    expect(env.PDS_JWT_SECRET).toMatch(/^[0-9a-f]{64}$/)
    expect(env.PDS_ADMIN_PASSWORD).toMatch(/^[0-9a-f]{32}$/)
    expect(env.PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX).toMatch(/^[0-9a-f]{64}$/)
    expect(env.PDS_DEV_MODE).toBeUndefined()
    // the production PDS takes it as it is: strong secrets, no unknown variables
    const cfg = readConfigFromEnv(env)
    expect(cfg.service.devMode).toBe(false)
    expect(cfg.service.publicUrl).toBe('https://pds.example.com')
    expect(cfg.identity.serviceHandleDomains).toEqual(['.pds.example.com'])
    expect(cfg.reportService).toEqual({ url: 'https://mod.bsky.app', did: 'did:plc:ar7c4by46qjdydhdevvrndac' })
    expect(cfg.warnings).toEqual([])
    expect(r.stdout).toContain('  pds.example.com      A     <IPv4 address of this server>')
    expect(r.stdout).toContain('  *.pds.example.com    A     <IPv4 address of this server>')
    expect(r.stdout).toContain('*.pds.example.com    AAAA')
    expect(r.stderr).toContain('mode 0600')
    // Caddy's file next to it: the host name and email, none of the secrets
    const caddy = fs.readFileSync(path.join(dir, 'deploy', 'caddy.env'), 'utf8')
    expect(parseEnvFile(caddy)).toEqual({ PDS_HOSTNAME: 'pds.example.com', PDS_ADMIN_EMAIL: 'op@example.com' })
    expect(caddy).not.toContain(env.PDS_JWT_SECRET!)

    // a second run keeps the secrets in use unless told otherwise
    const again = await runCli(['pds', 'init', '--hostname', 'pds.example.com', '--admin-email', 'op@example.com', '--env-file', file])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/exists; keep it .* --force/)
    expect(parseEnvFile(fs.readFileSync(file, 'utf8')).PDS_JWT_SECRET).toBe(env.PDS_JWT_SECRET)
    fs.chmodSync(file, 0o644)
    const forced = await runCli(['pds', 'init', '--hostname', 'pds.example.com', '--admin-email', 'op@example.com', '--env-file', file, '--force'])
    expect(forced.code).toBe(0)
    expect(fs.statSync(file).mode & 0o777).toBe(0o600)
    expect(parseEnvFile(fs.readFileSync(file, 'utf8')).PDS_JWT_SECRET).not.toBe(env.PDS_JWT_SECRET)
  })

  it("runs as README \"Run your own PDS\" has it: `pnpm -s stratos pds init FILE` (node 20 itself stops on `--env-file` naming a file that does not exist yet)", () => {
    const file = path.join(dir, 'readme', 'pds.env')
    const r = spawnSync('pnpm', ['-s', 'stratos', 'pds', 'init', file, '--hostname', 'pds.example.com', '--admin-email', 'op@example.com'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp' },
    })
    expect(r.status, r.stderr).toBe(0)
    expect(parseEnvFile(fs.readFileSync(file, 'utf8')).PDS_HOSTNAME).toBe('pds.example.com')
    expect(fs.existsSync(path.join(dir, 'readme', 'caddy.env'))).toBe(true)
  })

  it('asks for the host name and email on a terminal, again after a bad answer', async () => {
    const file = path.join(dir, 'asked.env')
    const answers = ['https://bad/', 'pds.example.org', 'not-an-email', 'me@example.org']
    const questions: string[] = []
    const out = new PassThrough()
    const err = new PassThrough()
    const errText: Buffer[] = []
    err.on('data', (c: Buffer) => errText.push(c))
    const io: Io = {
      stdout: out,
      stderr: err,
      env: {},
      ask: async (q) => {
        questions.push(q)
        return answers.shift()!
      },
    }
    expect(await main(['pds', 'init', '--env-file', file], io)).toBe(0)
    expect(questions).toHaveLength(4)
    expect(questions[0]).toMatch(/host name/)
    expect(questions[3]).toMatch(/email/i)
    expect(Buffer.concat(errText).toString()).toContain("'https://bad/' is not a host name")
    expect(parseEnvFile(fs.readFileSync(file, 'utf8'))).toMatchObject({ PDS_HOSTNAME: 'pds.example.org', PDS_ADMIN_EMAIL: 'me@example.org' })
  })

  it('without a terminal, missing flags are a usage error; reserved names are refused', async () => {
    const noTty = await runCli(['pds', 'init', '--env-file', path.join(dir, 'x.env')])
    expect(noTty.code).toBe(2)
    expect(noTty.stderr).toMatch(/no terminal to ask on, give it as a flag/)
    const reserved = await runCli(['pds', 'init', '--hostname', 'pds.test', '--admin-email', 'a@b.co', '--env-file', path.join(dir, 'y.env')])
    expect(reserved.code).toBe(2)
    expect(reserved.stderr).toMatch(/reserved name/)
    expect(fs.existsSync(path.join(dir, 'x.env'))).toBe(false)
  })

  it('stratos pds refuses the sample secrets of docker-compose.yml outside dev mode, naming each variable', async () => {
    const file = path.join(dir, 'weak.env')
    fs.writeFileSync(
      file,
      [
        'PDS_HOSTNAME=pds.example.com',
        `PDS_DATA_DIRECTORY=${path.join(dir, 'weak-data')}`,
        `PDS_BLOBSTORE_DISK_LOCATION=${path.join(dir, 'weak-data', 'blobs')}`,
        'PDS_JWT_SECRET=insecure-dev-jwt-secret-change-me',
        'PDS_ADMIN_PASSWORD=admin',
        'PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX=3a7b0f6e4c2d19a85f61e0b2c4d7a9e13f5b8c2d6e0a4f7b1c3d5e7f9a2b4c6d',
        '',
      ].join('\n'),
    )
    const r = await runBin(['pds', '--env-file', file])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('PDS_JWT_SECRET is a sample value')
    expect(r.stderr).toContain('PDS_ADMIN_PASSWORD is a sample value')
    expect(r.stderr).toContain('PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX is a sample value')
    expect(fs.existsSync(path.join(dir, 'weak-data'))).toBe(false)
  }, 60_000)
})
