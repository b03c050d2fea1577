import { PassThrough, type Readable } from 'node:stream'
import { PayloadTooLargeError } from './errors.js'

function tooLarge(limit: number): PayloadTooLargeError {
  return new PayloadTooLargeError(`Request body is larger than the limit of ${limit} bytes`)
}

/**
 * Stops reading `src` without destroying it: destroying an HTTP request would take the socket (and the
 * 413 response) with it. Node discards the unread rest once the response is sent.
 */
function stopReading(src: Readable, onData: (chunk: Buffer) => void): void {
  src.off('data', onData)
  src.pause()
}

/** Reads a whole body into memory, refusing more than `limit` bytes with 413 PayloadTooLarge. */
export function readBody(src: Readable, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    let total = 0
    const onData = (chunk: Buffer) => {
      total += chunk.length
      if (total > limit) {
        stopReading(src, onData)
        cleanup()
        reject(tooLarge(limit))
        return
      }
      chunks.push(chunk)
    }
    const onEnd = () => {
      cleanup()
      resolve(Buffer.concat(chunks, total))
    }
    const onError = (err: Error) => {
      cleanup()
      reject(err)
    }
    const cleanup = () => {
      src.off('end', onEnd)
      src.off('error', onError)
      src.off('data', onData)
    }
    src.on('data', onData)
    src.once('end', onEnd)
    src.once('error', onError)
  })
}

/**
 * A stream of the body that fails with 413 PayloadTooLarge once more than `limit` bytes have come in
 * (for blob uploads that should go to disk rather than memory). Back-pressure is kept.
 */
export function limitStream(src: Readable, limit: number): Readable {
  const out = new PassThrough()
  let total = 0
  const onData = (chunk: Buffer) => {
    total += chunk.length
    if (total > limit) {
      stopReading(src, onData)
      src.off('end', onEnd)
      out.destroy(tooLarge(limit))
      return
    }
    if (!out.write(chunk)) src.pause()
  }
  const onEnd = () => out.end()
  out.on('drain', () => src.resume())
  src.on('data', onData)
  src.once('end', onEnd)
  src.once('error', (err) => out.destroy(err))
  return out
}
