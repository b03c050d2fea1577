import { sql, type Kysely } from 'kysely'
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
}

export async function openAccountDb(path: string): Promise<Database<AccountDbSchema>> {
  const database = openSqlite<AccountDbSchema>(path)
  await migrateToLatest(database.db, migrations)
  return database
}
