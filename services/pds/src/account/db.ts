import { sql, type Generated, type Kysely } from 'kysely'
import { migrateToLatest, openSqlite, type Database, type Migrations } from '@stratos/core/db'

/** The service database: accounts, credentials, sessions, invites, repo heads. Times are ISO strings. */
export interface AccountTable {
  did: string
  handle: string | null
  email: string | null
  emailConfirmedAt: string | null
  passwordScrypt: string | null
  createdAt: string
  deactivatedAt: string | null
  deleteAfter: string | null
  takedownRef: string | null
  invitesDisabled: number
}

export interface SigningKeyTable {
  did: string
  curve: string
  /** 32-byte private key */
  privateKey: Uint8Array
}

export interface RepoRootTable {
  did: string
  cid: string
  rev: string
  indexedAt: string
}

export interface RefreshTokenTable {
  id: string
  did: string
  /** all tokens rotated from one login share a family; reuse of a spent token revokes the family */
  familyId: string
  appPasswordName: string | null
  expiresAt: string
  /** set once rotated: the id handed out in its place */
  nextId: string | null
  /** until when a rotated token may still be presented (a client retrying a lost response) */
  graceUntil: string | null
}

export interface AppPasswordTable {
  did: string
  name: string
  passwordScrypt: string
  createdAt: string
  privileged: number
}

export interface InviteCodeTable {
  code: string
  availableUses: number
  disabled: number
  forAccount: string
  createdBy: string
  createdAt: string
}

export interface InviteCodeUseTable {
  code: string
  usedBy: string
  usedAt: string
}

export interface EmailTokenTable {
  purpose: string
  did: string
  token: string
  requestedAt: string
}

export interface AccountDbSchema {
  account: AccountTable
  signing_key: SigningKeyTable
  repo_root: RepoRootTable
  refresh_token: RefreshTokenTable
  app_password: AppPasswordTable
  invite_code: InviteCodeTable
  invite_code_use: InviteCodeUseTable
  email_token: EmailTokenTable
  reserved_signing_key: ReservedSigningKeyTable
  oauth_device: OAuthDeviceTable
  oauth_device_account: OAuthDeviceAccountTable
  oauth_authorized_client: OAuthAuthorizedClientTable
  oauth_request: OAuthRequestTable
  oauth_token: OAuthTokenTable
  oauth_used_refresh_token: OAuthUsedRefreshTokenTable
  oauth_lexicon: OAuthLexiconTable
  oauth_replay: OAuthReplayTable
}

// OAuth authorization server state (see src/oauth/store.ts). JSON columns hold the library's own
// structures (request parameters, client auth) as it hands them over.

/** A browser that visited the sign-in pages (its cookie names the id). */
export interface OAuthDeviceTable {
  id: string
  sessionId: string
  userAgent: string | null
  ipAddress: string
  lastSeenAt: string
}

/** An account signed in on a device ("remembered" on the sign-in page). */
export interface OAuthDeviceAccountTable {
  deviceId: string
  did: string
  createdAt: string
  updatedAt: string
}

/** Scopes an account has granted a client (consent is not asked again for these). */
export interface OAuthAuthorizedClientTable {
  did: string
  clientId: string
  /** JSON: string[] */
  scopes: string
  updatedAt: string
}

/** A pushed authorization request, from PAR to the code exchange. */
export interface OAuthRequestTable {
  id: string
  clientId: string
  clientAuth: string | null
  parameters: string
  expiresAt: string
  deviceId: string | null
  did: string | null
  code: string | null
}

/** An OAuth session: one row per grant, its id and refresh token rotate. */
export interface OAuthTokenTable {
  rowId: Generated<number>
  tokenId: string
  did: string
  clientId: string
  clientAuth: string
  deviceId: string | null
  parameters: string
  scope: string | null
  code: string | null
  currentRefreshToken: string | null
  createdAt: string
  updatedAt: string
  expiresAt: string
}

/** Refresh tokens already exchanged: presenting one again reveals a leak (the session is revoked). */
export interface OAuthUsedRefreshTokenTable {
  refreshToken: string
  tokenRowId: number
}

export interface OAuthLexiconTable {
  nsid: string
  /** JSON: the library's LexiconData */
  data: string
}

/** DPoP proof ids (jti) and client assertion ids seen recently. */
export interface OAuthReplayTable {
  namespace: string
  nonce: string
  expiresAt: number
}

/** Keys handed out by com.atproto.server.reserveSigningKey, for an account that is about to move here. */
export interface ReservedSigningKeyTable {
  /** did:key of the reserved key */
  keyDid: string
  /** the DID it was reserved for, if the caller named one */
  did: string | null
  curve: string
  privateKey: Uint8Array
  createdAt: string
}

export type AccountDb = Kysely<AccountDbSchema>

const migrations: Migrations = {
  '001-init': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('account')
        .addColumn('did', 'varchar', (c) => c.primaryKey())
        .addColumn('handle', 'varchar')
        .addColumn('email', 'varchar')
        .addColumn('emailConfirmedAt', 'varchar')
        .addColumn('passwordScrypt', 'varchar')
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .addColumn('deactivatedAt', 'varchar')
        .addColumn('deleteAfter', 'varchar')
        .addColumn('takedownRef', 'varchar')
        .addColumn('invitesDisabled', 'integer', (c) => c.notNull().defaultTo(0))
        .execute()
      await db.schema.createIndex('account_handle_idx').unique().on('account').column('handle').execute()
      await db.schema.createIndex('account_email_idx').unique().on('account').expression(sql`lower(email)`).execute()
      await db.schema
        .createTable('signing_key')
        .addColumn('did', 'varchar', (c) => c.primaryKey())
        .addColumn('curve', 'varchar', (c) => c.notNull())
        .addColumn('privateKey', 'blob', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('repo_root')
        .addColumn('did', 'varchar', (c) => c.primaryKey())
        .addColumn('cid', 'varchar', (c) => c.notNull())
        .addColumn('rev', 'varchar', (c) => c.notNull())
        .addColumn('indexedAt', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('refresh_token')
        .addColumn('id', 'varchar', (c) => c.primaryKey())
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('familyId', 'varchar', (c) => c.notNull())
        .addColumn('appPasswordName', 'varchar')
        .addColumn('expiresAt', 'varchar', (c) => c.notNull())
        .addColumn('nextId', 'varchar')
        .addColumn('graceUntil', 'varchar')
        .execute()
      await db.schema.createIndex('refresh_token_did_idx').on('refresh_token').column('did').execute()
      await db.schema.createIndex('refresh_token_family_idx').on('refresh_token').column('familyId').execute()
      await db.schema
        .createTable('app_password')
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('name', 'varchar', (c) => c.notNull())
        .addColumn('passwordScrypt', 'varchar', (c) => c.notNull())
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .addColumn('privileged', 'integer', (c) => c.notNull().defaultTo(0))
        .addPrimaryKeyConstraint('app_password_pkey', ['did', 'name'])
        .execute()
      await db.schema
        .createTable('invite_code')
        .addColumn('code', 'varchar', (c) => c.primaryKey())
        .addColumn('availableUses', 'integer', (c) => c.notNull())
        .addColumn('disabled', 'integer', (c) => c.notNull().defaultTo(0))
        .addColumn('forAccount', 'varchar', (c) => c.notNull())
        .addColumn('createdBy', 'varchar', (c) => c.notNull())
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('invite_code_use')
        .addColumn('code', 'varchar', (c) => c.notNull())
        .addColumn('usedBy', 'varchar', (c) => c.notNull())
        .addColumn('usedAt', 'varchar', (c) => c.notNull())
        .addPrimaryKeyConstraint('invite_code_use_pkey', ['code', 'usedBy'])
        .execute()
      await db.schema
        .createTable('email_token')
        .addColumn('purpose', 'varchar', (c) => c.notNull())
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('token', 'varchar', (c) => c.notNull())
        .addColumn('requestedAt', 'varchar', (c) => c.notNull())
        .addPrimaryKeyConstraint('email_token_pkey', ['purpose', 'did'])
        .execute()
    },
  },
  '002-reserved-signing-key': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('reserved_signing_key')
        .addColumn('keyDid', 'varchar', (c) => c.primaryKey())
        .addColumn('did', 'varchar')
        .addColumn('curve', 'varchar', (c) => c.notNull())
        .addColumn('privateKey', 'blob', (c) => c.notNull())
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('reserved_signing_key_did_idx').on('reserved_signing_key').column('did').execute()
      await db.schema.createIndex('email_token_token_idx').on('email_token').columns(['purpose', 'token']).execute()
    },
  },
  '003-oauth': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('oauth_device')
        .addColumn('id', 'varchar', (c) => c.primaryKey())
        .addColumn('sessionId', 'varchar', (c) => c.notNull())
        .addColumn('userAgent', 'varchar')
        .addColumn('ipAddress', 'varchar', (c) => c.notNull())
        .addColumn('lastSeenAt', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('oauth_device_account')
        .addColumn('deviceId', 'varchar', (c) => c.notNull())
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .addColumn('updatedAt', 'varchar', (c) => c.notNull())
        .addPrimaryKeyConstraint('oauth_device_account_pkey', ['deviceId', 'did'])
        .execute()
      await db.schema.createIndex('oauth_device_account_did_idx').on('oauth_device_account').column('did').execute()
      await db.schema
        .createTable('oauth_authorized_client')
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('clientId', 'varchar', (c) => c.notNull())
        .addColumn('scopes', 'varchar', (c) => c.notNull())
        .addColumn('updatedAt', 'varchar', (c) => c.notNull())
        .addPrimaryKeyConstraint('oauth_authorized_client_pkey', ['did', 'clientId'])
        .execute()
      await db.schema
        .createTable('oauth_request')
        .addColumn('id', 'varchar', (c) => c.primaryKey())
        .addColumn('clientId', 'varchar', (c) => c.notNull())
        .addColumn('clientAuth', 'varchar')
        .addColumn('parameters', 'varchar', (c) => c.notNull())
        .addColumn('expiresAt', 'varchar', (c) => c.notNull())
        .addColumn('deviceId', 'varchar')
        .addColumn('did', 'varchar')
        .addColumn('code', 'varchar')
        .execute()
      await db.schema.createIndex('oauth_request_code_idx').unique().on('oauth_request').column('code').execute()
      await db.schema.createIndex('oauth_request_expires_idx').on('oauth_request').column('expiresAt').execute()
      await db.schema
        .createTable('oauth_token')
        .addColumn('rowId', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('tokenId', 'varchar', (c) => c.notNull().unique())
        .addColumn('did', 'varchar', (c) => c.notNull())
        .addColumn('clientId', 'varchar', (c) => c.notNull())
        .addColumn('clientAuth', 'varchar', (c) => c.notNull())
        .addColumn('deviceId', 'varchar')
        .addColumn('parameters', 'varchar', (c) => c.notNull())
        .addColumn('scope', 'varchar')
        .addColumn('code', 'varchar')
        .addColumn('currentRefreshToken', 'varchar', (c) => c.unique())
        .addColumn('createdAt', 'varchar', (c) => c.notNull())
        .addColumn('updatedAt', 'varchar', (c) => c.notNull())
        .addColumn('expiresAt', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('oauth_token_did_idx').on('oauth_token').column('did').execute()
      await db.schema.createIndex('oauth_token_code_idx').on('oauth_token').column('code').execute()
      await db.schema
        .createTable('oauth_used_refresh_token')
        .addColumn('refreshToken', 'varchar', (c) => c.primaryKey())
        .addColumn('tokenRowId', 'integer', (c) => c.notNull())
        .execute()
      await db.schema
        .createIndex('oauth_used_refresh_token_row_idx')
        .on('oauth_used_refresh_token')
        .column('tokenRowId')
        .execute()
      await db.schema
        .createTable('oauth_lexicon')
        .addColumn('nsid', 'varchar', (c) => c.primaryKey())
        .addColumn('data', 'varchar', (c) => c.notNull())
        .execute()
      await db.schema
        .createTable('oauth_replay')
        .addColumn('namespace', 'varchar', (c) => c.notNull())
        .addColumn('nonce', 'varchar', (c) => c.notNull())
        .addColumn('expiresAt', 'integer', (c) => c.notNull())
        .addPrimaryKeyConstraint('oauth_replay_pkey', ['namespace', 'nonce'])
        .execute()
      await db.schema.createIndex('oauth_replay_expires_idx').on('oauth_replay').column('expiresAt').execute()
    },
  },
}

export async function openAccountDb(path: string): Promise<Database<AccountDbSchema>> {
  const database = openSqlite<AccountDbSchema>(path)
  await migrateToLatest(database.db, migrations)
  return database
}
