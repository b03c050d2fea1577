/**
 * The whole network in one process: PLC on port N, PDS on N+1, Relay on N+2, AppView on N+3, and (option
 * `labeler`) a labeler on N+4 (127.0.0.1).
 * Each service is configured through the same environment variables it reads when started alone (or in its
 * Docker image), so the dev network exercises the operators' configuration path.
 */
import { randomBytes } from 'node:crypto'
import fs from 'node:fs'
import path from 'node:path'
import { AppViewServer, readConfig as readAppViewConfig } from '@stratos/appview'
import { importKeypair } from '@stratos/core/crypto'
import { LabelerServer, initLabeler, readConfig as readLabelerConfig } from '@stratos/labeler'
import { PdsServer, readConfigFromEnv as readPdsConfig } from '@stratos/pds'
import { PlcServer, readConfig as readPlcConfig } from '@stratos/plc'
import { RelayServer, readConfig as readRelayConfig } from '@stratos/relay'

export { DEV_NETWORK_PORT_COUNT, freePortBase, portFree } from './ports.js'

export const DEFAULT_PORT_BASE = 2582

export interface DevNetworkOptions {
  /** where every service keeps its data (default ./data); secrets are generated once and kept there */
  dataDir?: string
  /** PLC on N, PDS on N+1, Relay on N+2, AppView on N+3 (default 2582) */
  portBase?: number
  /** log level for every service (default 'warn'; 'silent' in tests) */
  logLevel?: string
  /** extra environment per service, applied over the defaults */
  env?: { plc?: Env; pds?: Env; relay?: Env; appview?: Env; labeler?: Env }
  /**
   * Also run a labeler on N+4 (default false; `stratos dev` turns it on): its account `labeler.test` on the
   * PDS is set up as by `stratos labeler init`, and the AppView follows it (its labels apply to requests
   * that name no labelers; clients name the ones their user subscribes to).
   */
  labeler?: boolean
}

type Env = Record<string, string>

export interface DevSecrets {
  pdsJwtSecret: string
  pdsAdminPassword: string
  pdsPlcRotationKeyHex: string
  relayAdminPassword: string
  appviewSigningKeyHex: string
  appviewAdminPassword: string
  labelerAdminPassword: string
  labelerSigningKeyHex: string
  /** password of the labeler's account (labeler.test) on the PDS */
  labelerAccountPassword: string
}

export interface DevNetworkUrls {
  plc: string
  pds: string
  relay: string
  appview: string
  /** with the `labeler` option */
  labeler?: string
}

/** The labeler account's handle on the dev PDS. */
export const DEV_LABELER_HANDLE = 'labeler.test'

export interface DevNetwork {
  urls: DevNetworkUrls
  secrets: DevSecrets
  /** the environment each service was started with */
  env: { plc: Env; pds: Env; relay: Env; appview: Env; labeler?: Env }
  plc: PlcServer
  pds: PdsServer
  relay: RelayServer
  appview: AppViewServer
  /** with the `labeler` option: the labeler and its account's DID */
  labeler?: LabelerServer
  labelerDid?: string
  close(): Promise<void>
}

/**
 * Reads the dev secrets from `<dataDir>/dev-secrets.json`, creating them on first start (and adding the
 * ones a file written by an older version lacks).
 */
export function loadOrCreateSecrets(dataDir: string): DevSecrets {
  const file = path.join(dataDir, 'dev-secrets.json')
  const hex = (n: number) => randomBytes(n).toString('hex')
  const fresh: DevSecrets = {
    pdsJwtSecret: hex(16),
    pdsAdminPassword: hex(8),
    pdsPlcRotationKeyHex: hex(32),
    relayAdminPassword: hex(8),
    appviewSigningKeyHex: hex(32),
    appviewAdminPassword: hex(8),
    labelerAdminPassword: hex(8),
    labelerSigningKeyHex: hex(32),
    labelerAccountPassword: hex(12),
  }
  if (fs.existsSync(file)) {
    const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<DevSecrets>
    const missing = (Object.keys(fresh) as (keyof DevSecrets)[]).filter((k) => typeof stored[k] !== 'string')
    if (missing.length === 0) return stored as DevSecrets
    const merged = { ...fresh, ...stored } as DevSecrets
    fs.writeFileSync(file, JSON.stringify(merged, null, 2) + '\n', { mode: 0o600 })
    return merged
  }
  const secrets = fresh
  fs.mkdirSync(dataDir, { recursive: true })
  fs.writeFileSync(file, JSON.stringify(secrets, null, 2) + '\n', { mode: 0o600 })
  return secrets
}

/** The environment of each service for a dev network on the given ports and data directory. */
export function devNetworkEnv(dataDir: string, portBase: number, secrets: DevSecrets, logLevel: string) {
  const port = { plc: portBase, pds: portBase + 1, relay: portBase + 2, appview: portBase + 3, labeler: portBase + 4 }
  const url = (p: number) => `http://127.0.0.1:${p}`
  const appviewPublicUrl = `http://localhost:${port.appview}`
  const appviewDid = `did:web:localhost%3A${port.appview}`
  const plc: Env = {
    PLC_PORT: String(port.plc),
    PLC_HOST: '127.0.0.1',
    PLC_DATA_DIRECTORY: path.join(dataDir, 'plc'),
    PLC_LOG_LEVEL: logLevel,
    PLC_TRUSTED_PROXIES: 'loopback',
  }
  const pds: Env = {
    PDS_HOSTNAME: '127.0.0.1',
    PDS_PORT: String(port.pds),
    PDS_DEV_MODE: 'true',
    PDS_DATA_DIRECTORY: path.join(dataDir, 'pds'),
    PDS_BLOBSTORE_DISK_LOCATION: path.join(dataDir, 'pds', 'blobs'),
    PDS_DID_PLC_URL: url(port.plc),
    PDS_SERVICE_HANDLE_DOMAINS: '.test',
    PDS_INVITE_REQUIRED: 'false',
    PDS_JWT_SECRET: secrets.pdsJwtSecret,
    PDS_ADMIN_PASSWORD: secrets.pdsAdminPassword,
    PDS_PLC_ROTATION_KEY_K256_PRIVATE_KEY_HEX: secrets.pdsPlcRotationKeyHex,
    PDS_BSKY_APP_VIEW_URL: url(port.appview),
    PDS_BSKY_APP_VIEW_DID: appviewDid,
    PDS_CRAWLERS: url(port.relay),
    PDS_TRUSTED_PROXIES: 'loopback',
    LOG_LEVEL: logLevel,
  }
  const relay: Env = {
    RELAY_PORT: String(port.relay),
    RELAY_HOST: '127.0.0.1',
    RELAY_DATA_DIRECTORY: path.join(dataDir, 'relay'),
    RELAY_PLC_URL: url(port.plc),
    RELAY_ADMIN_PASSWORD: secrets.relayAdminPassword,
    RELAY_DEV_MODE: 'true',
    RELAY_CRAWL_HOSTS: url(port.pds),
    RELAY_TRUSTED_PROXIES: 'loopback',
    LOG_LEVEL: logLevel,
  }
  const appview: Env = {
    APPVIEW_PORT: String(port.appview),
    APPVIEW_HOST: '127.0.0.1',
    APPVIEW_DATA_DIRECTORY: path.join(dataDir, 'appview'),
    APPVIEW_PLC_URL: url(port.plc),
    APPVIEW_RELAY_URL: url(port.relay),
    APPVIEW_PUBLIC_URL: appviewPublicUrl,
    APPVIEW_DID: appviewDid,
    APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX: secrets.appviewSigningKeyHex,
    APPVIEW_ADMIN_PASSWORD: secrets.appviewAdminPassword,
    APPVIEW_DEV_MODE: 'true',
    // *.test handles are answered by the PDS's /.well-known/atproto-did (chosen by Host header)
    APPVIEW_HANDLE_RESOLVER_URL: url(port.pds),
    APPVIEW_TRUSTED_PROXIES: 'loopback',
    // new labeler records are picked up within a second
    APPVIEW_LABELER_REFRESH_MS: '1000',
    LOG_LEVEL: logLevel,
  }
  // LABELER_DID is added once the labeler account exists (startDevNetwork)
  const labeler: Env = {
    LABELER_PORT: String(port.labeler),
    LABELER_HOST: '127.0.0.1',
    LABELER_DATA_DIRECTORY: path.join(dataDir, 'labeler'),
    LABELER_SIGNING_KEY_K256_PRIVATE_KEY_HEX: secrets.labelerSigningKeyHex,
    LABELER_ADMIN_PASSWORD: secrets.labelerAdminPassword,
    LABELER_PLC_URL: url(port.plc),
    LABELER_PUBLIC_URL: url(port.labeler),
    LABELER_DEV_MODE: 'true',
    LABELER_TRUSTED_PROXIES: 'loopback',
    LOG_LEVEL: logLevel,
  }
  return { plc, pds, relay, appview, labeler }
}

/**
 * The labeler account on the dev PDS (created on first start), set up as `stratos labeler init` does: its
 * app.bsky.labeler.service record and, through the PDS's PLC operation flow, the #atproto_label key and the
 * #atproto_labeler service in its DID document (the emailed code is read from the dev PDS's mailer).
 */
async function setUpLabelerAccount(pds: PdsServer, env: Env, secrets: DevSecrets): Promise<string> {
  const email = 'labeler@stratos.test'
  const password = secrets.labelerAccountPassword
  const created = await fetch(`${pds.url}/xrpc/com.atproto.server.createAccount`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ handle: DEV_LABELER_HANDLE, email, password }),
  })
  // on a restart the account is already there (handle taken): init logs in to it
  if (!created.ok && created.status !== 400) throw new Error(`could not create ${DEV_LABELER_HANDLE}: HTTP ${created.status} ${await created.text()}`)
  const key = await importKeypair(secrets.labelerSigningKeyHex, 'k256')
  const result = await initLabeler({
    pdsUrl: pds.url,
    identifier: DEV_LABELER_HANDLE,
    password,
    labelerUrl: env.LABELER_PUBLIC_URL!,
    labelKey: key.did(),
    plcUrl: env.LABELER_PLC_URL,
    token: async () => {
      const mail = pds.ctx.mailer.lastMailTo(email)
      const code = mail?.text.match(/code:\s+(\S+)/)?.[1]
      if (!code) throw new Error('the dev PDS sent no PLC operation code')
      return code
    },
  })
  return result.did
}

/**
 * Creates the data directory one level at a time (Node's recursive mkdir loops forever under /proc and
 * similar file systems) and checks it is a writable directory; every failure names the path.
 */
export function prepareDataDir(dir: string): void {
  const missing: string[] = []
  let p = path.resolve(dir)
  while (!fs.existsSync(p)) {
    missing.unshift(p)
    const parent = path.dirname(p)
    if (parent === p) break
    p = parent
  }
  if (!fs.statSync(p).isDirectory()) throw new Error(`data directory ${dir}: ${p} is not a directory`)
  for (const m of missing) {
    try {
      fs.mkdirSync(m, { mode: 0o700 })
    } catch (err) {
      throw new Error(`cannot create the data directory ${m}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`)
    }
  }
  if (!fs.statSync(dir).isDirectory()) throw new Error(`data directory ${dir} is not a directory`)
  try {
    fs.accessSync(dir, fs.constants.W_OK)
  } catch {
    throw new Error(`data directory ${dir} is not writable`)
  }
}

/**
 * Takes `<dataDir>/dev-network.lock` (holding this process's pid) so that two networks never share one
 * data directory; a lock left by a process that no longer runs is taken over. Returns the release function.
 */
export function lockDataDir(dataDir: string): () => void {
  const file = path.join(dataDir, 'dev-network.lock')
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      fs.writeFileSync(file, `${process.pid}\n`, { flag: 'wx', mode: 0o600 })
      let released = false
      return () => {
        if (released) return
        released = true
        fs.rmSync(file, { force: true })
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
      const pid = Number(fs.readFileSync(file, 'utf8').trim())
      let alive = false
      if (Number.isInteger(pid) && pid > 0 && pid !== process.pid) {
        try {
          process.kill(pid, 0)
          alive = true
        } catch (e) {
          alive = (e as NodeJS.ErrnoException).code === 'EPERM'
        }
      }
      if (alive || pid === process.pid) {
        throw new Error(`data directory ${dataDir} is in use by another dev network (pid ${pid}); stop it or use another --data-dir`)
      }
      fs.rmSync(file, { force: true }) // stale: its process is gone
    }
  }
  throw new Error(`could not lock data directory ${dataDir}`)
}

/** Starts PLC, Relay, AppView and PDS, in that order; closes what started if a later one fails. */
export async function startDevNetwork(opts: DevNetworkOptions = {}): Promise<DevNetwork> {
  const dataDir = path.resolve(opts.dataDir ?? './data')
  const portBase = opts.portBase ?? DEFAULT_PORT_BASE
  prepareDataDir(dataDir)
  const unlock = lockDataDir(dataDir)
  let secrets: DevSecrets
  try {
    secrets = loadOrCreateSecrets(dataDir)
  } catch (err) {
    unlock()
    throw err
  }
  const base = devNetworkEnv(dataDir, portBase, secrets, opts.logLevel ?? 'warn')
  const env: DevNetwork['env'] = {
    plc: { ...base.plc, ...opts.env?.plc },
    pds: { ...base.pds, ...opts.env?.pds },
    relay: { ...base.relay, ...opts.env?.relay },
    appview: { ...base.appview, ...opts.env?.appview },
  }
  const started: { close(): Promise<void> }[] = []
  const closeAll = async () => {
    for (const s of started.reverse()) await s.close().catch(() => undefined)
    started.length = 0
    unlock()
  }
  try {
    const plc = await PlcServer.create(readPlcConfig(env.plc))
    await plc.start()
    started.push(plc)
    // the relay and the AppView first, so that the PDS's requestCrawl at start-up finds the relay listening
    const relay = await RelayServer.create(readRelayConfig(env.relay))
    await relay.start()
    started.push(relay)
    const startAppView = async () => {
      const appview = await AppViewServer.create(readAppViewConfig(env.appview))
      await appview.start()
      started.push(appview)
      return appview
    }
    if (!opts.labeler) {
      const appview = await startAppView()
      const pds = await PdsServer.create(readPdsConfig(env.pds))
      await pds.start()
      started.push(pds)
      return {
        urls: { plc: plc.url, pds: pds.url, relay: relay.url, appview: appview.url },
        secrets,
        env,
        plc,
        pds,
        relay,
        appview,
        close: closeAll,
      }
    }
    // with a labeler: the PDS first (the labeler is an account on it), then the labeler, then the AppView,
    // which follows the labeler from the start
    const pds = await PdsServer.create(readPdsConfig(env.pds))
    await pds.start()
    started.push(pds)
    const labelerEnv: Env = { ...base.labeler, ...opts.env?.labeler }
    const labelerDid = await setUpLabelerAccount(pds, labelerEnv, secrets)
    labelerEnv.LABELER_DID = labelerDid
    env.labeler = labelerEnv
    const labeler = await LabelerServer.create(readLabelerConfig(labelerEnv))
    await labeler.start()
    started.push(labeler)
    env.appview = { APPVIEW_LABELERS: labelerDid, ...env.appview }
    const appview = await startAppView()
    // the labeler account was written before the AppView listened: index it now (its service record)
    await appview.ctx.ingester.resync(labelerDid)
    return {
      urls: { plc: plc.url, pds: pds.url, relay: relay.url, appview: appview.url, labeler: labeler.url },
      secrets,
      env,
      plc,
      pds,
      relay,
      appview,
      labeler,
      labelerDid,
      close: closeAll,
    }
  } catch (err) {
    await closeAll()
    throw err
  }
}

/** Waits until every service answers GET /xrpc/_health with 200. */
export async function waitForHealth(urls: DevNetworkUrls, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs
  for (const [name, base] of Object.entries(urls)) {
    for (;;) {
      const ok = await fetch(new URL('/xrpc/_health', base), { signal: AbortSignal.timeout(2000) })
        .then((r) => r.ok)
        .catch(() => false)
      if (ok) break
      if (Date.now() > deadline) throw new Error(`${name} at ${base} did not answer /xrpc/_health within ${timeoutMs} ms`)
      await new Promise((r) => setTimeout(r, 100))
    }
  }
}
