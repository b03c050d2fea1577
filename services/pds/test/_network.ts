import fs from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { randomBytes } from 'node:crypto'
import { PlcServer } from '@stratos/plc'
import { PdsServer, type PdsServerOptions } from '../src/server.js'
import { readConfigFromEnv, type PdsConfig } from '../src/config.js'

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.on('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

export interface TestNetwork {
  plc: PlcServer
  pds: PdsServer
  cfg: PdsConfig
  env: Record<string, string>
  dir: string
  url: string
  /** closes the PDS and starts a new one on the same data and port */
  restartPds(): Promise<PdsServer>
  close(): Promise<void>
}

/** The environment of a dev-mode test PDS on 127.0.0.1:`port` with its data in `dir` (fresh secrets each time). */
export function testPdsEnv(o: { plcUrl: string; dir: string; port: number; extraEnv?: Record<string, string> }): Record<string, string> {
  return {
    PDS_HOSTNAME: '127.0.0.1',
    PDS_PORT: String(o.port),
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: o.dir,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(o.dir, 'blobs'),
    PDS_DID_PLC_URL: o.plcUrl,
    PDS_JWT_SECRET: randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: 'admin-pass',
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: randomBytes(32).toString('hex'),
    PDS_INVITE_REQUIRED: 'false',
    LOG_LEVEL: 'silent',
    // the suite runs with commits on the main thread too: PDS_WRITE_WORKERS=0 pnpm exec vitest run services/pds
    ...(process.env.PDS_WRITE_WORKERS !== undefined ? { PDS_WRITE_WORKERS: process.env.PDS_WRITE_WORKERS } : {}),
    ...o.extraEnv,
  }
}

/** A PLC directory (in memory) and a PDS on loopback, with its data in a temp directory. */
export async function startNetwork(extraEnv: Record<string, string> = {}, serverOpts: PdsServerOptions = {}): Promise<TestNetwork> {
  const plc = await PlcServer.create({ port: 0, host: '127.0.0.1', dbPath: ':memory:', version: 'test', logLevel: 'silent' })
  await plc.start()
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-it-'))
  const port = await freePort()
  const env = testPdsEnv({ plcUrl: plc.url, dir, port, extraEnv })
  const cfg = readConfigFromEnv(env)
  let pds = await PdsServer.create(cfg, serverOpts)
  const url = await pds.start()
  const network: TestNetwork = {
    plc,
    pds,
    cfg,
    env,
    dir,
    url,
    async restartPds() {
      await pds.close()
      pds = await PdsServer.create(cfg, serverOpts)
      await pds.start()
      network.pds = pds
      return pds
    },
    async close() {
      await pds.close()
      await plc.close()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
  return network
}

export interface TestPds {
  pds: PdsServer
  cfg: PdsConfig
  dir: string
  url: string
  /** stops the PDS, keeping its data (a PDS that went away) */
  stop(): Promise<void>
  close(): Promise<void>
}

/**
 * One more PDS on loopback, with its own data directory, secrets, rotation key and service DID
 * (`did:web:127.0.0.1%3A<port>`, so two test PDSes have different audiences), using an existing PLC.
 */
export async function startPds(plcUrl: string, extraEnv: Record<string, string> = {}): Promise<TestPds> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pds-it-'))
  const port = await freePort()
  const env: Record<string, string> = {
    PDS_HOSTNAME: '127.0.0.1',
    PDS_PORT: String(port),
    PDS_SERVICE_DID: `did:web:127.0.0.1%3A${port}`,
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: dir,
    PDS_BLOBSTORE_DISK_LOCATION: path.join(dir, 'blobs'),
    PDS_DID_PLC_URL: plcUrl,
    PDS_JWT_SECRET: randomBytes(16).toString('hex'),
    PDS_ADMIN_PASSWORD: 'admin-pass',
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: randomBytes(32).toString('hex'),
    PDS_INVITE_REQUIRED: 'false',
    LOG_LEVEL: 'silent',
    ...extraEnv,
  }
  const cfg = readConfigFromEnv(env)
  const pds = await PdsServer.create(cfg)
  const url = await pds.start()
  let closed = false
  const stop = async () => {
    if (!closed) {
      closed = true
      await pds.close()
    }
  }
  return {
    pds,
    cfg,
    dir,
    url,
    stop,
    async close() {
      await stop()
      fs.rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Calls an XRPC method with fetch, returning status and parsed JSON (for checking exact errors). */
export async function xrpc(
  base: string,
  nsid: string,
  opts: { method?: 'GET' | 'POST'; token?: string; body?: unknown; params?: Record<string, string>; headers?: Record<string, string> } = {},
): Promise<{ status: number; body: any; headers: Headers }> {
  const url = new URL(`/xrpc/${nsid}`, base)
  for (const [k, v] of Object.entries(opts.params ?? {})) url.searchParams.set(k, v)
  const headers: Record<string, string> = { ...(opts.headers ?? {}) }
  if (opts.token) headers.authorization = `Bearer ${opts.token}`
  let body: string | undefined
  if (opts.body !== undefined) {
    headers['content-type'] = 'application/json'
    body = JSON.stringify(opts.body)
  }
  const res = await fetch(url, { method: opts.method ?? (opts.body !== undefined ? 'POST' : 'GET'), headers, body })
  const text = await res.text()
  let parsed: unknown = text
  try {
    parsed = JSON.parse(text)
  } catch {
    // not JSON
  }
  return { status: res.status, body: parsed, headers: res.headers }
}

/** Creates an account `<name>.test` (email `<name>@example.com`) and returns its DID and access token. */
export async function createTestAccount(url: string, name: string): Promise<{ did: string; token: string }> {
  const res = await xrpc(url, 'com.atproto.server.createAccount', {
    body: { handle: `${name}.test`, email: `${name}@example.com`, password: `${name}-password` },
  })
  if (res.status !== 200) throw new Error(`createAccount ${name}: ${res.status} ${JSON.stringify(res.body)}`)
  return { did: res.body.did, token: res.body.accessJwt }
}
