/**
 * `stratos repo export <did|handle> -o file.car [--blobs dir]`: the repo CAR (com.atproto.sync.getRepo),
 * streamed to disk, and optionally every blob (listBlobs + getBlob), each checked against its CID.
 */
import { createHash } from 'node:crypto'
import { createWriteStream } from 'node:fs'
import { mkdir, rename, rm, stat } from 'node:fs/promises'
import { join } from 'node:path'
import { Readable, Transform } from 'node:stream'
import { pipeline } from 'node:stream/promises'
import { CID } from '@stratos/core/data'
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError, command, urlOption } from '../util/command.js'
import { classifyActor, identityOptions, resolveActor, resolverFromFlags } from '../util/identity.js'
import { Progress, formatBytes, note, println } from '../util/io.js'
import { xrpcFetch, xrpcJson } from '../util/xrpc.js'

const SHA2_256 = 0x12

function counter(onBytes: (total: number) => void): Transform {
  let total = 0
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      total += chunk.length
      onBytes(total)
      cb(null, chunk)
    },
  })
}

/** Streams a response body to `path` (via `path.partial`, renamed when complete). Returns the byte count. */
async function download(res: Response, path: string, onBytes: (n: number) => void, hash?: ReturnType<typeof createHash>): Promise<number> {
  if (!res.body) throw new CliError('empty response body')
  const tmp = `${path}.partial`
  let bytes = 0
  const count = counter((n) => {
    bytes = n
    onBytes(n)
  })
  const digest = new Transform({
    transform(chunk: Buffer, _enc, cb) {
      hash?.update(chunk)
      cb(null, chunk)
    },
  })
  try {
    await pipeline(Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>), count, digest, createWriteStream(tmp))
  } catch (err) {
    await rm(tmp, { force: true })
    throw new CliError(`download to ${path} failed: ${(err as Error).message}`, 1, { cause: err })
  }
  await rename(tmp, path)
  return bytes
}

async function fileExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isFile()
  } catch {
    return false
  }
}

async function sha256File(path: string): Promise<Uint8Array> {
  const { createReadStream } = await import('node:fs')
  const hash = createHash('sha256')
  await pipeline(createReadStream(path), async function* (source: AsyncIterable<Buffer>) {
    for await (const chunk of source) hash.update(chunk)
  })
  return hash.digest()
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i])
}

export const repoExportCommand = command({
  name: 'repo export',
  summary: "Download an account's repo as a CAR file (and its blobs)",
  usage: 'repo export <did|handle> -o FILE [--blobs DIR] [options]',
  description: `
Resolves the account's PDS from its DID document (or uses --pds), downloads com.atproto.sync.getRepo
into FILE ('-' for stdout), and with --blobs lists the account's blobs (com.atproto.sync.listBlobs) and
downloads each (com.atproto.sync.getBlob) to DIR/<cid>, checking that its bytes hash to the CID. Blobs
already in DIR with the right hash are skipped, so an interrupted export can be run again.
Progress goes to stderr, a summary to stdout. Check the CAR with 'stratos repo inspect FILE'.`,
  options: {
    output: { type: 'string', short: 'o', valueName: 'FILE', description: "where to write the CAR ('-' for stdout)" },
    blobs: { type: 'string', valueName: 'DIR', description: 'also download every blob into DIR' },
    pds: { type: 'string', valueName: 'URL', description: 'ask this PDS instead of the one in the DID document' },
    quiet: { type: 'boolean', short: 'q', description: 'no progress output' },
    json: { type: 'boolean', description: 'print the summary as JSON' },
    ...identityOptions,
  },
  positionals: { min: 1, max: 1 },
  examples: ['stratos repo export alice.bsky.social -o alice.car --blobs alice-blobs'],
  async run({ values, positionals, io }) {
    if (!values.output) throw new UsageError('-o FILE is required')
    const toStdout = values.output === '-'
    if (toStdout && values.blobs) throw new UsageError('--blobs cannot be combined with -o - (stdout)')
    const progress = new Progress(io, { quiet: values.quiet })

    // the account and its PDS
    let did: string
    let pds: string
    const actor = classifyActor(positionals[0]!)
    if (values.pds) {
      pds = urlOption('pds', values.pds)
      if (actor.kind === 'handle') {
        const res = await xrpcJson<{ did?: string }>(pds, 'com.atproto.identity.resolveHandle', { params: { handle: actor.value } })
        if (typeof res.did !== 'string') throw new CliError(`${pds} did not resolve ${actor.value}`)
        did = res.did
      } else {
        did = actor.value
      }
    } else {
      const resolved = await resolveActor(resolverFromFlags(values), positionals[0]!)
      did = resolved.did
      pds = resolved.pds
    }
    if (!values.quiet) note(io, `exporting ${did} from ${pds}`)

    // the repo
    const res = await xrpcFetch(pds, 'com.atproto.sync.getRepo', { params: { did }, signal: io.signal })
    const total = Number(res.headers.get('content-length') ?? NaN)
    const show = (n: number) =>
      progress.update(`repo: ${formatBytes(n)}${Number.isFinite(total) && total > 0 ? ` of ${formatBytes(total)} (${Math.floor((n / total) * 100)}%)` : ''}`)
    let carBytes: number
    if (toStdout) {
      if (!res.body) throw new CliError('empty response body')
      let n = 0
      await pipeline(
        Readable.fromWeb(res.body as import('node:stream/web').ReadableStream<Uint8Array>),
        counter((t) => {
          n = t
          show(t)
        }),
        io.stdout as unknown as NodeJS.WritableStream,
        { end: false },
      )
      carBytes = n
    } else {
      carBytes = await download(res, values.output, show)
    }
    progress.done(`repo: ${formatBytes(carBytes)}${toStdout ? '' : ` written to ${values.output}`}`)

    // the blobs
    let blobCount = 0
    let blobBytes = 0
    let skipped = 0
    const failures: { cid: string; error: string }[] = []
    if (values.blobs) {
      const dir = values.blobs
      await mkdir(dir, { recursive: true })
      const cids: string[] = []
      let cursor: string | undefined
      do {
        const page = await xrpcJson<{ cids?: unknown; cursor?: string }>(pds, 'com.atproto.sync.listBlobs', {
          params: { did, limit: 1000, cursor },
          signal: io.signal,
        })
        const list = Array.isArray(page.cids) ? page.cids.filter((c): c is string => typeof c === 'string') : []
        cids.push(...list)
        progress.update(`blobs: listed ${cids.length}`)
        cursor = list.length > 0 && typeof page.cursor === 'string' ? page.cursor : undefined
      } while (cursor)
      progress.done(`blobs: ${cids.length} to fetch`)
      for (const [i, cidStr] of cids.entries()) {
        if (io.signal?.aborted) throw new CliError('interrupted')
        let cid: CID
        try {
          cid = CID.parse(cidStr)
        } catch {
          failures.push({ cid: cidStr, error: 'not a CID' })
          continue
        }
        if (cid.multihash.code !== SHA2_256) {
          failures.push({ cid: cidStr, error: 'not a sha-256 CID' })
          continue
        }
        const path = join(dir, cid.toString())
        if ((await fileExists(path)) && sameBytes(await sha256File(path), cid.multihash.digest)) {
          skipped++
          continue
        }
        try {
          const blobRes = await xrpcFetch(pds, 'com.atproto.sync.getBlob', { params: { did, cid: cidStr }, signal: io.signal })
          const hash = createHash('sha256')
          const n = await download(blobRes, path, () => progress.update(`blobs: ${i + 1}/${cids.length} (${formatBytes(blobBytes)})`), hash)
          if (!sameBytes(hash.digest(), cid.multihash.digest)) {
            await rm(path, { force: true })
            failures.push({ cid: cidStr, error: 'the bytes do not hash to the CID' })
            continue
          }
          blobBytes += n
          blobCount++
        } catch (err) {
          failures.push({ cid: cidStr, error: (err as Error).message })
        }
      }
      progress.done(
        `blobs: ${blobCount} downloaded (${formatBytes(blobBytes)})${skipped ? `, ${skipped} already present` : ''}${failures.length ? `, ${failures.length} failed` : ''}`,
      )
      for (const f of failures) note(io, `  blob ${f.cid}: ${f.error}`)
    }

    if (!toStdout) {
      const summary = {
        did,
        pds,
        car: values.output,
        carBytes,
        ...(values.blobs ? { blobsDir: values.blobs, blobs: blobCount, blobBytes, blobsSkipped: skipped, blobsFailed: failures } : {}),
      }
      if (values.json) await println(io.stdout, JSON.stringify(summary))
      else {
        await println(
          io.stdout,
          `${did}: ${values.output} (${formatBytes(carBytes)})${values.blobs ? `, ${blobCount + skipped} blob${blobCount + skipped === 1 ? '' : 's'} in ${values.blobs}` : ''}`,
        )
      }
    }
    if (failures.length > 0) {
      io.stderr.write(`stratos repo export: ${failures.length} blob${failures.length === 1 ? '' : 's'} could not be downloaded\n`)
      return EXIT_FAILURE
    }
    return EXIT_OK
  },
})

