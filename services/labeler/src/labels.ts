/** Labels as stored by the labeler; the signed format itself lives in @stratos/core/label. */
import type { Label } from '@stratos/core/label'
import type { LabelTable } from './db.js'

export { labelSigningBytes, signLabel, verifyLabel, type Label, type UnsignedLabel } from '@stratos/core/label'

type LabelRow = Pick<LabelTable, 'src' | 'uri' | 'cid' | 'val' | 'neg' | 'cts' | 'exp' | 'sig'>

/** A stored row as the signed label (fields in the shape that was signed). */
export function labelFromRow(row: LabelRow): Label {
  const label: Label = { ver: 1, src: row.src, uri: row.uri, val: row.val, cts: row.cts, sig: Uint8Array.from(row.sig) }
  if (row.cid) label.cid = row.cid
  if (row.neg) label.neg = true
  if (row.exp) label.exp = row.exp
  return label
}
