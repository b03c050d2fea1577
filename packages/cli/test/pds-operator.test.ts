/**
 * The operator's commands (what the reference distribution's pdsadmin does) against a real PDS: accounts,
 * passwords, invites, request-crawl, update, and backup / restore through an env file.
 */
import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AtpAgent } from '@atproto/api'
import { PdsServer, readConfigFromEnv } from '@stratos/pds'
import { PlcServer } from '@stratos/plc'
import { parseEnvFile } from '../src/commands/pds-init.js'
import { jsonLines, runCli, sendJson, startServer, type TestServer } from './helpers.js'

async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  await new Promise((r) => srv.close(r))
  return port
}

describe('stratos operator commands against a real PDS', () => {
  let dir: string
  let plc: PlcServer
  let pds: PdsServer
  let pdsUrl: string
  let envFile: string
  let env: Record<string, string>
  let relay: TestServer
  const admin = () => ['--pds', pdsUrl, '--admin-password', env.PDS_ADMIN_PASSWORD!]

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-operator-'))
    plc = await PlcServer.create({ port: 0, host: '127.0.0.1', dbPath: ':memory:', version: 'test', logLevel: 'silent' })
    await plc.start()
    relay = await startServer((_req, res) => sendJson(res, 200, {}))
    const port = await freePort()
    env = {
      PDS_HOSTNAME: 'localhost',
      PDS_DEV_MODE: 'true',
      PDS_PORT: String(port),
      PDS_DATA_DIRECTORY: path.join(dir, 'pds'),
      PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'pds', 'blocks'),
      PDS_DID_PLC_URL: plc.url,
      PDS_JWT_SECRET: randomBytes(32).toString('hex'),
      PDS_ADMIN_PASSWORD: randomBytes(16).toString('hex'),
      PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: randomBytes(32).toString('hex'),
      PDS_INVITE_REQUIRED: 'true',
      PDS_CRAWLERS: relay.url,
      LOG_LEVEL: 'silent',
    }
    envFile = path.join(dir, 'pds.env')
    fs.writeFileSync(envFile, Object.entries(env).map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 })
    pds = await PdsServer.create(readConfigFromEnv(env))
    pdsUrl = await pds.start()
  }, 60_000)
  afterAll(async () => {
    await pds?.close()
    await plc?.close()
    await relay?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('account create / list / reset-password / takedown / delete, invite create', async () => {
    const created = await runCli(['account', 'create', '--handle', 'alice', '--password', 'first-pw-123', '--json', ...admin()])
    expect(created.code, created.stderr).toBe(0)
    const alice = JSON.parse(created.stdout) as { did: string; handle: string }
    expect(alice.handle).toBe('alice.test')

    const list = await runCli(['account', 'list', '--json', ...admin()])
    expect(jsonLines(list.stdout)).toEqual([expect.objectContaining({ did: alice.did, handle: 'alice.test', status: 'active' })])

    const reset = await runCli(['account', 'reset-password', 'alice.test', '--json', ...admin()])
    expect(reset.code, reset.stderr).toBe(0)
    const { password } = JSON.parse(reset.stdout) as { password: string }
    expect(password.length).toBeGreaterThanOrEqual(16)
    const agent = new AtpAgent({ service: pdsUrl })
    await expect(agent.login({ identifier: 'alice.test', password: 'first-pw-123' })).rejects.toThrow()
    await agent.login({ identifier: 'alice.test', password })

    const invite = await runCli(['invite', 'create', ...admin()])
    expect(invite.code).toBe(0)
    const code = invite.stdout.trim()
    const bob = new AtpAgent({ service: pdsUrl })
    await bob.createAccount({ handle: 'bob.test', email: 'bob@example.com', password: 'bob-pw-bob', inviteCode: code })
    // the pdsadmin spelling too
    const invite2 = await runCli(['pds', 'create-invite-code', ...admin()])
    expect(invite2.code, invite2.stderr).toBe(0)
    expect(invite2.stdout.trim()).not.toBe(code)

    expect((await runCli(['account', 'takedown', 'bob.test', ...admin()])).stdout).toContain('taken down')
    await expect(bob.login({ identifier: 'bob.test', password: 'bob-pw-bob' })).rejects.toThrow()
    expect((await runCli(['account', 'takedown', 'bob.test', '--reverse', ...admin()])).code).toBe(0)
    const del = await runCli(['account', 'delete', 'bob.test', '--yes', ...admin()])
    expect(del.code, del.stderr).toBe(0)
    const after = await runCli(['account', 'list', '--json', ...admin()])
    expect(jsonLines(after.stdout).map((a) => a.handle)).toEqual(['alice.test'])
  })

  it('account commands on a dev network read the admin password from its dev-secrets.json', async () => {
    const data = path.join(dir, 'devdata')
    fs.mkdirSync(data)
    fs.writeFileSync(path.join(data, 'dev-secrets.json'), JSON.stringify({ pdsAdminPassword: env.PDS_ADMIN_PASSWORD }))
    const list = await runCli(['account', 'list', '--json', '--pds', pdsUrl], { env: { STRATOS_DATA_DIR: data } })
    expect(list.code, list.stderr).toBe(0)
    expect(jsonLines(list.stdout).map((a) => a.handle)).toContain('alice.test')
    const without = await runCli(['account', 'list', '--pds', pdsUrl], { env: { STRATOS_DATA_DIR: path.join(dir, 'nothing') } })
    expect(without.code).toBe(2)
  })

  it('pds request-crawl asks PDS_CRAWLERS (or the relays given) to crawl PDS_HOSTNAME', async () => {
    const before = relay.requests.length
    const r = await runCli(['pds', 'request-crawl', '--env-file', envFile])
    expect(r.code, r.stderr).toBe(0)
    expect(r.stdout).toBe(`${relay.url}: crawl requested for localhost\n`)
    const req = relay.requests.slice(before).find((q) => q.path === '/xrpc/com.atproto.sync.requestCrawl')!
    expect(req.method).toBe('POST')
    expect(req.body).toEqual({ hostname: 'localhost' })
    const down = await runCli(['pds', 'request-crawl', 'http://127.0.0.1:1', '--hostname', 'pds.example.com'])
    expect(down.code).toBe(1)
    expect(down.stderr).toMatch(/1 of 1 relays refused or could not be reached/)
  })

  it('pds update prints the compose steps', async () => {
    const r = await runCli(['pds', 'update'])
    expect(r.code).toBe(0)
    expect(r.stdout).toContain('docker compose up -d')
    expect(r.stdout).toContain('stratos pds backup')
  })

  it('pds backup while the PDS runs, pds restore into an empty data directory: the same repo and blobs', async () => {
    const agent = new AtpAgent({ service: pdsUrl })
    await agent.login({ identifier: 'alice.test', password: JSON.parse((await runCli(['account', 'reset-password', 'alice.test', '--json', ...admin()])).stdout).password })
    const image = randomBytes(50_000)
    const up = await agent.com.atproto.repo.uploadBlob(image, { encoding: 'image/png' })
    await agent.post({ text: 'before the backup', createdAt: new Date().toISOString(), embed: { $type: 'app.bsky.embed.images', images: [{ alt: '', image: up.data.blob }] } })
    const did = agent.session!.did
    const car = Buffer.from((await agent.com.atproto.sync.getRepo({ did })).data)

    const backupDir = path.join(dir, 'backups', 'one')
    const b = await runCli(['pds', 'backup', backupDir, '--env-file', envFile])
    expect(b.code, b.stderr).toBe(0)
    expect(b.stdout).toMatch(/^backed up localhost to .*: \d+ files, \d+ bytes\n$/)

    // a second machine: the same env file with another data directory
    const env2 = { ...parseEnvFile(fs.readFileSync(envFile, 'utf8')), PDS_PORT: String(await freePort()), PDS_DATA_DIRECTORY: path.join(dir, 'pds2'), PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'pds2', 'blocks') }
    const envFile2 = path.join(dir, 'pds2.env')
    fs.writeFileSync(envFile2, Object.entries(env2).map(([k, v]) => `${k}=${v}\n`).join(''), { mode: 0o600 })
    const r = await runCli(['pds', 'restore', backupDir, '--env-file', envFile2])
    expect(r.code, r.stderr).toBe(0)
    const again = await runCli(['pds', 'restore', backupDir, '--env-file', envFile2])
    expect(again.code).toBe(1)
    expect(again.stderr).toMatch(/restore only into an empty data directory/)

    const pds2 = await PdsServer.create(readConfigFromEnv(env2))
    const url2 = await pds2.start()
    try {
      const other = new AtpAgent({ service: url2 })
      expect(Buffer.from((await other.com.atproto.sync.getRepo({ did })).data).equals(car)).toBe(true)
      const blob = await other.com.atproto.sync.getBlob({ did, cid: up.data.blob.ref.toString() })
      expect(Buffer.from(blob.data).equals(image)).toBe(true)
    } finally {
      await pds2.close()
    }
  }, 60_000)
})
