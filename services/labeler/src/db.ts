/**
 * The labeler's SQLite database (kysely): its labels (one row per (uri, val), the current state; `seq`
 * is the subscribeLabels sequence number, never reused) and the moderation reports it received.
 */
import { sql, type Generated, type Kysely } from 'kysely'
import type { Migrations } from '@stratos/core/db'

export interface LabelTable {
  /** INTEGER PRIMARY KEY AUTOINCREMENT: a replaced label gets a new seq, an old seq is never handed out again */
  seq: Generated<number>
  src: string
  uri: string
  cid: string | null
  val: string
  neg: number
  cts: string
  exp: string | null
  sig: Uint8Array
}

export interface ReportTable {
  id: Generated<number>
  reason_type: string
  reason: string | null
  /** the com.atproto.moderation.createReport `subject` as JSON */
  subject: string
  /** DID (at-uri for records) of the subject, for listing */
  subject_uri: string
  reported_by: string
  created_at: string
}

export interface DatabaseSchema {
  label: LabelTable
  report: ReportTable
}

export type Db = Kysely<DatabaseSchema>

export const migrations: Migrations = {
  '001-init': {
    async up(db: Kysely<any>) {
      await db.schema
        .createTable('label')
        .addColumn('seq', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('src', 'text', (c) => c.notNull())
        .addColumn('uri', 'text', (c) => c.notNull())
        .addColumn('cid', 'text')
        .addColumn('val', 'text', (c) => c.notNull())
        .addColumn('neg', 'integer', (c) => c.notNull())
        .addColumn('cts', 'text', (c) => c.notNull())
        .addColumn('exp', 'text')
        .addColumn('sig', 'blob', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('label_uri_val_idx').on('label').columns(['uri', 'val']).unique().execute()
      await db.schema
        .createTable('report')
        .addColumn('id', 'integer', (c) => c.primaryKey().autoIncrement())
        .addColumn('reason_type', 'text', (c) => c.notNull())
        .addColumn('reason', 'text')
        .addColumn('subject', 'text', (c) => c.notNull())
        .addColumn('subject_uri', 'text', (c) => c.notNull())
        .addColumn('reported_by', 'text', (c) => c.notNull())
        .addColumn('created_at', 'text', (c) => c.notNull())
        .execute()
      await db.schema.createIndex('report_subject_idx').on('report').column('subject_uri').execute()
    },
  },
}

/** Highest seq ever assigned to a label (survives replacement of the newest row), 0 when none. */
export async function headSeq(db: Db): Promise<number> {
  const row = await sql<{ seq: number }>`SELECT seq FROM sqlite_sequence WHERE name = 'label'`.execute(db)
  return Number(row.rows[0]?.seq ?? 0)
}
