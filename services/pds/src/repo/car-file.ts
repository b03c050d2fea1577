/**
 * Reads the root block of a CAR file on disk without loading the file: the header, then section by
 * section (length and CID only) until the root's block. Used to check an imported repo's commit
 * signature before the whole repo is read into memory for verification.
 */
import { open } from 'node:fs/promises'
import { CID } from 'multiformats/cid'
import { cborDecode } from '@stratos/core/data'
import { CarError } from '@stratos/core/repo'

const WINDOW = 64 * 1024

function readVarint(buf: Uint8Array, pos: number): [value: number, next: number] | null {
  let value = 0
  let shift = 0
  for (let i = pos; i < buf.length && i < pos + 9; i++) {
    const b = buf[i]!
    value += (b & 0x7f) * 2 ** shift
    if ((b & 0x80) === 0) return [value, i + 1]
    shift += 7
  }
  return null
}

export async function readRootBlockFromFile(file: string, maxBlockBytes = 2 * 1024 * 1024): Promise<{ root: CID; bytes: Uint8Array }> {
  const fh = await open(file, 'r')
  try {
    const { size } = await fh.stat()
    const at = async (pos: number, len: number): Promise<Uint8Array> => {
      const buf = Buffer.alloc(Math.max(0, Math.min(len, size - pos)))
      if (buf.length > 0) await fh.read(buf, 0, buf.length, pos)
      return buf
    }
    let head = await at(0, WINDOW)
    const h = readVarint(head, 0)
    if (!h || h[0] === 0 || h[0] > WINDOW - h[1]) throw new CarError('bad-header', 'bad CAR header length')
    let header: { version?: unknown; roots?: unknown }
    try {
      header = cborDecode(head.subarray(h[1], h[1] + h[0])) as typeof header
    } catch (err) {
      throw new CarError('bad-header', `header is not DAG-CBOR: ${(err as Error).message}`)
    }
    const roots = Array.isArray(header?.roots) ? header.roots : []
    const root = roots.length === 1 ? CID.asCID(roots[0]) : null
    if (header?.version !== 1 || !root) throw new CarError('bad-header', 'expected a version 1 CAR with one root')
    let pos = h[1] + h[0]
    while (pos < size) {
      head = await at(pos, 128)
      const s = readVarint(head, 0)
      if (!s || s[0] === 0) throw new CarError('bad-cid', `bad block section at byte ${pos}`)
      const [sectionLen, cidStart] = s
      if (pos + cidStart + sectionLen > size) throw new CarError('truncated', 'input ends inside a block')
      let cid: CID
      let rest: Uint8Array
      try {
        ;[cid, rest] = CID.decodeFirst(head.subarray(cidStart)) as [CID, Uint8Array]
      } catch (err) {
        throw new CarError('bad-cid', (err as Error).message)
      }
      const cidLen = head.length - cidStart - rest.length
      if (cid.equals(root)) {
        const len = sectionLen - cidLen
        if (len > maxBlockBytes) throw new CarError('block-too-big', 'the root block is too large')
        return { root, bytes: await at(pos + cidStart + cidLen, len) }
      }
      pos += cidStart + sectionLen
    }
    throw new CarError('truncated', 'the CAR does not hold its root')
  } finally {
    await fh.close()
  }
}
