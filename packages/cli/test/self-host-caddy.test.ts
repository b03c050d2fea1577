/**
 * README "Run your own PDS" without Docker: `stratos pds init`, the PDS, and deploy/pds/Caddyfile run by a
 * real Caddy (Debian's package; .ci/run installs it) with a local CA instead of Let's Encrypt, and a
 * hosts-file stand-in for DNS (every name resolves to 127.0.0.1). Checks HTTPS for the host name,
 * on-demand certificates for existing handles only, an account and a post through Caddy, and a backup.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process'
import fs from 'node:fs'
import https from 'node:https'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { PlcServer } from '@stratos/plc'
import { parseEnvFile } from '../src/commands/pds-init.js'
import { ROOT, runCli, spawnBin } from './helpers.js'

const HOST = 'pds.example.com'

async function freePort(): Promise<number> {
  const srv = net.createServer()
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r))
  const { port } = srv.address() as net.AddressInfo
  await new Promise((r) => srv.close(r))
  return port
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms
  let last: unknown
  for (;;) {
    try {
      const v = await fn()
      if (v !== undefined) return v
    } catch (err) {
      last = err
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${String(last)}`)
    await new Promise((r) => setTimeout(r, 200))
  }
}

// Caddy is Debian's package (.ci/run installs it); without it this test says so and skips
const caddyAvailable = spawnSync('caddy', ['version'], { stdio: 'ignore' }).status === 0
if (!caddyAvailable) console.log('self-host-caddy.test: SKIPPED (no `caddy` on PATH; `apt-get install caddy`, as .ci/run does)')

describe.runIf(caddyAvailable)('a PDS on its own domain behind Caddy (local CA, hosts-file DNS)', () => {
  let dir: string
  let plc: PlcServer
  let pds: ReturnType<typeof spawnBin>
  let caddy: ChildProcess
  let httpsPort: number
  let ca: Buffer
  let envFile: string

  /** an HTTPS request to https://<name>:<httpsPort> as a client whose DNS says <name> is this machine */
  const request = (name: string, pathname: string, body?: unknown, token?: string) =>
    new Promise<{ status: number; json: any }>((resolve, reject) => {
      const data = body === undefined ? undefined : JSON.stringify(body)
      const req = https.request(
        {
          host: name,
          port: httpsPort,
          path: pathname,
          method: data ? 'POST' : 'GET',
          ca,
          servername: name,
          // the hosts-file stand-in: every name is this machine
          lookup: (_h, o, cb) =>
            (o as { all?: boolean }).all
              ? (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }])
              : (cb as (e: null, a: string, f: number) => void)(null, '127.0.0.1', 4),
          headers: { ...(data ? { 'content-type': 'application/json' } : {}), ...(token ? { authorization: `Bearer ${token}` } : {}) },
        },
        (res) => {
          const chunks: Buffer[] = []
          res.on('data', (c: Buffer) => chunks.push(c))
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString('utf8')
            let json: unknown = text
            try {
              json = JSON.parse(text)
            } catch {
              // plain text
            }
            resolve({ status: res.statusCode ?? 0, json })
          })
        },
      )
      req.on('error', reject)
      req.end(data)
    })

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stratos-selfhost-'))
    plc = await PlcServer.create({ port: 0, host: '127.0.0.1', dbPath: ':memory:', version: 'test', logLevel: 'silent' })
    await plc.start()

    // 1. stratos pds init (the README's command, with flags instead of answers)
    envFile = path.join(dir, 'pds.env')
    const init = await runCli(['pds', 'init', '--hostname', HOST, '--admin-email', 'admin@example.com', '--env-file', envFile, '--data-dir', path.join(dir, 'data')])
    expect(init.code, init.stderr).toBe(0)

    // 2. the PDS from that env file; the test's stand-ins: a local PLC (http, so dev mode) and no public relay
    const pdsPort = await freePort()
    pds = spawnBin(['pds', '--env-file', envFile], {
      PDS_DEV_MODE: 'true',
      PDS_DID_PLC_URL: plc.url,
      PDS_CRAWLERS: '',
      PDS_INVITE_REQUIRED: 'false',
      PDS_PORT: String(pdsPort),
      PDS_BIND_HOST: '127.0.0.1',
      LOG_LEVEL: 'warn',
    })
    await until('the PDS', async () => ((await fetch(`http://127.0.0.1:${pdsPort}/xrpc/_health`)).ok ? true : undefined))

    // 3. Caddy with the repository's Caddyfile
    const httpPort = await freePort()
    httpsPort = await freePort()
    const env = parseEnvFile(fs.readFileSync(envFile, 'utf8'))
    caddy = spawn('caddy', ['run', '--config', path.join(ROOT, 'deploy/pds/Caddyfile'), '--adapter', 'caddyfile'], {
      env: {
        PATH: process.env.PATH ?? '',
        HOME: dir,
        XDG_DATA_HOME: path.join(dir, 'caddy-data'),
        XDG_CONFIG_HOME: path.join(dir, 'caddy-config'),
        PDS_HOSTNAME: env.PDS_HOSTNAME!,
        PDS_ADMIN_EMAIL: env.PDS_ADMIN_EMAIL!,
        PDS_UPSTREAM: `127.0.0.1:${pdsPort}`,
        CADDY_HTTP_PORT: String(httpPort),
        CADDY_HTTPS_PORT: String(httpsPort),
        CADDY_EXTRA_GLOBAL: 'local_certs\nskip_install_trust\nadmin off',
      },
      stdio: ['ignore', 'ignore', 'pipe'],
    })
    let caddyLog = ''
    caddy.stderr!.on('data', (c: Buffer) => (caddyLog += c.toString()))
    const root = path.join(dir, 'caddy-data', 'caddy', 'pki', 'authorities', 'local', 'root.crt')
    await until(`Caddy's local CA (${caddyLog.slice(-500)})`, async () => (fs.existsSync(root) ? true : undefined))
    ca = fs.readFileSync(root)
  }, 120_000)

  afterAll(async () => {
    caddy?.kill('SIGTERM')
    if (pds && pds.child.exitCode === null) {
      pds.child.kill('SIGINT')
      await pds.done
    }
    await plc?.close()
    if (dir) fs.rmSync(dir, { recursive: true, force: true })
  })

  it('serves /xrpc/_health over HTTPS on the host name; an account and a post through Caddy; handle certificates only for existing handles', async () => {
    const health = await until('HTTPS through Caddy', () => request(HOST, '/xrpc/_health'))
    expect(health.status).toBe(200)
    expect(health.json).toMatchObject({ version: expect.any(String) })

    // a name the PDS does not serve gets no certificate (Caddy asked /tls-check and was told no)
    await expect(request(`bob.${HOST}`, '/xrpc/_health')).rejects.toThrow()

    const created = await request(HOST, '/xrpc/com.atproto.server.createAccount', {
      handle: `alice.${HOST}`,
      email: 'alice@example.com',
      password: 'alice-password',
    })
    expect(created.status, JSON.stringify(created.json)).toBe(200)
    const { did, accessJwt } = created.json as { did: string; accessJwt: string }

    // now alice's handle gets its certificate on first use, and resolves over HTTPS
    const wellKnown = await request(`alice.${HOST}`, '/.well-known/atproto-did')
    expect(wellKnown).toEqual({ status: 200, json: expect.anything() })
    expect(String(wellKnown.json).trim()).toBe(did)

    const post = await request(
      HOST,
      '/xrpc/com.atproto.repo.createRecord',
      { repo: did, collection: 'app.bsky.feed.post', record: { text: 'hello from my own PDS', createdAt: new Date().toISOString() } },
      accessJwt,
    )
    expect(post.status, JSON.stringify(post.json)).toBe(200)
    const got = await request(HOST, `/xrpc/com.atproto.repo.getRecord?repo=${did}&collection=app.bsky.feed.post&rkey=${post.json.uri.split('/').pop()}`)
    expect(got.json.value).toMatchObject({ $type: 'app.bsky.feed.post', text: 'hello from my own PDS' })

    // the README's backup step, while it runs
    const backup = await runCli(['pds', 'backup', path.join(dir, 'backup'), '--env-file', envFile], { env: { PDS_DEV_MODE: 'true', PDS_DID_PLC_URL: plc.url } })
    expect(backup.code, backup.stderr).toBe(0)
  }, 90_000)
})
