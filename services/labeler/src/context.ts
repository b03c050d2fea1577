/**
 * Builds the labeler's dependencies once from its configuration: database (migrated), signing key,
 * label store, identity resolver (for service auth) and the XRPC server.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs'
import { join } from 'node:path'
import type { Logger } from 'pino'
import { JtiReplayCache } from '@stratos/core/auth'
import { networkServerOptions } from '@stratos/core/config'
import { generateKeypair, importKeypair, type SigningKeypair } from '@stratos/core/crypto'
import { migrateToLatest, openSqlite, type Database } from '@stratos/core/db'
import { IdentityResolver } from '@stratos/core/identity'
import {
  MethodNotImplementedError,
  adminBasicAuth,
  createXrpcServer,
  serviceJwtAuth,
  type AdminCredentials,
  type AuthVerifier,
  type ServiceCredentials,
  type XrpcServer,
} from '@stratos/core/xrpc'
import type { LabelerConfig } from './config.js'
import { migrations, type DatabaseSchema } from './db.js'
import { LabelStore } from './label-store.js'

export interface LabelerContextOptions {
  /** replaces the identity resolver built from the config (tests) */
  idResolver?: IdentityResolver
}

export class LabelerContext {
  readonly labels: LabelStore
  readonly auth: { admin: AuthVerifier<AdminCredentials>; service: AuthVerifier<ServiceCredentials> }
  readonly log: Logger

  private constructor(
    readonly config: LabelerConfig,
    readonly database: Database<DatabaseSchema>,
    readonly xrpc: XrpcServer,
    readonly signingKey: SigningKeypair,
    readonly idResolver: IdentityResolver,
  ) {
    this.log = xrpc.app.log as unknown as Logger
    this.labels = new LabelStore(database.db, config.did, signingKey)
    const password = config.adminPassword
    const admin: AuthVerifier<AdminCredentials> = password
      ? adminBasicAuth(password)
      : async () => {
          throw new MethodNotImplementedError('the admin API is disabled: set LABELER_ADMIN_PASSWORD')
        }
    const replayCache = new JtiReplayCache()
    const service = serviceJwtAuth({
      audience: [config.did, `${config.did}#atproto_labeler`],
      getSigningKey: (iss, force) => idResolver.getSigningKey(iss, force),
      replayCache,
    })
    this.auth = { admin, service }
  }

  get db() {
    return this.database.db
  }

  static async create(config: LabelerConfig, opts: LabelerContextOptions = {}): Promise<LabelerContext> {
    const inMemory = config.dataDirectory === ':memory:'
    if (!inMemory) mkdirSync(config.dataDirectory, { recursive: true })
    const database = openSqlite<DatabaseSchema>(inMemory ? ':memory:' : join(config.dataDirectory, 'labeler.sqlite'))
    try {
      await migrateToLatest(database.db, migrations)
    } catch (err) {
      await database.close()
      throw err
    }
    const xrpc = createXrpcServer({
      version: config.version,
      logger: config.logLevel === 'silent' ? false : { level: config.logLevel },
      bodyLimits: { json: 256 * 1024 },
      ...networkServerOptions(config.network),
    })
    const signingKey = await loadSigningKey(config, inMemory)
    const idResolver =
      opts.idResolver ?? new IdentityResolver({ plcUrl: config.plcUrl, allowPrivateAddresses: config.devMode })
    return new LabelerContext(config, database, xrpc, signingKey, idResolver)
  }
}

/** The #atproto_label key: from the config, else generated once and kept in the data directory. */
async function loadSigningKey(config: LabelerConfig, inMemory: boolean): Promise<SigningKeypair> {
  if (config.signingKeyHex) return importKeypair(config.signingKeyHex, 'k256')
  const file = inMemory ? null : join(config.dataDirectory, 'signing-key.k256.hex')
  if (file && existsSync(file)) return importKeypair(readFileSync(file, 'utf8').trim(), 'k256')
  const key = await generateKeypair('k256')
  if (file) writeFileSync(file, Buffer.from(key.export()).toString('hex'), { mode: 0o600 })
  return key
}
