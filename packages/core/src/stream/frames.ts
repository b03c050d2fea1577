/**
 * Event-stream frame codec.
 *
 * A frame is one binary WebSocket message holding two DAG-CBOR (DRISL) objects back to back: a header
 * (`{op: 1, t: "#commit"}` for a message, `{op: -1}` for an error) and a payload that is always a map.
 */
import * as dagCbor from '@ipld/dag-cbor'
import { CID } from 'multiformats/cid'
import { CborTruncatedError, cborDecode, scanCborItem } from '../data/index.js'

export const OP_MESSAGE = 1
export const OP_ERROR = -1

/** Thrown by {@link decodeFrame} for anything a consumer must treat as a broken stream (drop the connection). */
export class FrameError extends Error {
  /** the frame was cut short (it ends inside a CBOR item, or has no body), as opposed to malformed */
  readonly truncated: boolean
  constructor(message: string, options?: { cause?: unknown; truncated?: boolean }) {
    super(message, options)
    this.name = 'FrameError'
    this.truncated = options?.truncated ?? false
  }
}

export interface MessageFrame<B = Record<string, unknown>> {
  op: 1
  /** short type, e.g. `#commit`, or a full `nsid#name` */
  t: string
  body: B
}

export interface ErrorFrame {
  op: -1
  error: string
  message?: string
}

/** A well-formed frame with an op this code does not know: consumers ignore it. */
export interface UnknownFrame {
  op: 'unknown'
  header: Record<string, unknown>
  body: unknown
}

export type DecodedFrame = MessageFrame | ErrorFrame | UnknownFrame

type Bytes = Uint8Array

// ---------------------------------------------------------------------------------------------------
// encoding

const headerCache = new Map<string, Uint8Array>()
const HEADER_CACHE_MAX = 256

/** The canonical header bytes of a message frame of type `t` (`{op: 1, t}`), shared: do not modify. */
export function messageHeaderBytes(t: string): Uint8Array {
  return messageHeader(t)
}

function messageHeader(t: string): Uint8Array {
  let h = headerCache.get(t)
  if (!h) {
    h = dagCbor.encode({ op: OP_MESSAGE, t })
    if (headerCache.size < HEADER_CACHE_MAX) headerCache.set(t, h)
  }
  return h
}

const ERROR_HEADER = dagCbor.encode({ op: OP_ERROR })

function isPlainMap(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

/**
 * Checks a value against the data model (integers only, no undefined inside arrays) and drops
 * object properties whose value is `undefined` (optional fields left unset). Copies only what changes.
 */
function prepare(value: unknown, path: string, depth: number): unknown {
  if (depth > 128) throw new TypeError(`frame body nests too deeply at ${path}`)
  switch (typeof value) {
    case 'number':
      if (!Number.isSafeInteger(value)) throw new TypeError(`frame body has a non-integer number at ${path}: ${value}`)
      return value
    case 'string':
    case 'boolean':
      return value
    case 'bigint':
      return value
    case 'undefined':
      throw new TypeError(`frame body has undefined at ${path}`)
    case 'object': {
      if (value === null) return value
      if (value instanceof Uint8Array) return value
      if (CID.asCID(value)) return value
      if (Array.isArray(value)) {
        let out: unknown[] | undefined
        for (let i = 0; i < value.length; i++) {
          const v = prepare(value[i], `${path}[${i}]`, depth + 1)
          if (v !== value[i]) {
            out ??= value.slice()
            out[i] = v
          }
        }
        return out ?? value
      }
      if (!isPlainMap(value)) throw new TypeError(`frame body has an unsupported object at ${path}`)
      let out: Record<string, unknown> | undefined
      for (const key of Object.keys(value)) {
        const v = value[key]
        if (v === undefined) {
          out ??= { ...value }
          delete out[key]
          continue
        }
        const p = prepare(v, `${path}.${key}`, depth + 1)
        if (p !== v) {
          out ??= { ...value }
          out[key] = p
        }
      }
      return out ?? value
    }
    default:
      throw new TypeError(`frame body has an unsupported ${typeof value} at ${path}`)
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = Buffer.allocUnsafe(a.length + b.length)
  out.set(a, 0)
  out.set(b, a.length)
  return out
}

/**
 * Encodes a message frame: header `{op: 1, t}` followed by the body map. `$type` in the body is dropped
 * (the type travels in `t`), as are properties set to `undefined`. Floats are refused.
 * Encode once per event and hand the same bytes to every consumer.
 */
export function encodeMessageFrame(t: string, body: Record<string, unknown>): Uint8Array {
  if (typeof t !== 'string' || t.length === 0) throw new TypeError('message frame type `t` must be a non-empty string')
  if (!isPlainMap(body)) throw new TypeError('message frame body must be a map (plain object)')
  let b = prepare(body, 'body', 0) as Record<string, unknown>
  if ('$type' in b) {
    const { $type: _omit, ...rest } = b
    b = rest
  }
  return concat(messageHeader(t), dagCbor.encode(b))
}

/** Encodes an error frame: header `{op: -1}` followed by `{error, message?}`. */
export function encodeErrorFrame(error: string, message?: string): Uint8Array {
  if (typeof error !== 'string' || error.length === 0) throw new TypeError('error frame name must be a non-empty string')
  const body: Record<string, unknown> = { error }
  if (message !== undefined) body.message = message
  return concat(ERROR_HEADER, dagCbor.encode(body))
}

/** `#info` message frame (not persisted, no seq), e.g. `{name: "OutdatedCursor"}`. */
export function encodeInfoFrame(name: string, message?: string): Uint8Array {
  const body: Record<string, unknown> = { name }
  if (message !== undefined) body.message = message
  return encodeMessageFrame('#info', body)
}

// ---------------------------------------------------------------------------------------------------
// decoding

function toBytes(data: Uint8Array | ArrayBuffer | readonly Uint8Array[]): Bytes {
  if (data instanceof Uint8Array) return data
  if (data instanceof ArrayBuffer) return new Uint8Array(data)
  if (Array.isArray(data)) return Buffer.concat(data as Uint8Array[])
  throw new FrameError('frame is not binary data')
}

/** The data model's strict scan and decode (no floats, only tag 42, no indefinite lengths, depth-limited), as FrameError. */
function itemEnd(bytes: Bytes, start: number, what: string): number {
  try {
    return scanCborItem(bytes, start)
  } catch (err) {
    const truncated = err instanceof CborTruncatedError
    throw new FrameError(`${truncated ? 'truncated' : 'invalid'} CBOR in frame ${what}: ${(err as Error).message}`, { cause: err, truncated })
  }
}

function decodeItem(bytes: Bytes, what: string): unknown {
  try {
    return cborDecode(bytes)
  } catch (err) {
    throw new FrameError(`invalid CBOR in frame ${what}: ${(err as Error).message}`, { cause: err })
  }
}

/**
 * Decodes one frame. Message frames → `{op: 1, t, body}`; error frames → `{op: -1, error, message?}`;
 * a well-formed frame with another op → `{op: 'unknown', header, body}` (ignore it).
 * Throws {@link FrameError} for anything malformed: bad or truncated CBOR, header not a map, op not an
 * integer, missing `t` on a message, body not a map, error frame without `error`, trailing bytes.
 */
export function decodeFrame(data: Uint8Array | ArrayBuffer | readonly Uint8Array[]): DecodedFrame {
  const bytes = toBytes(data)
  if (bytes.length === 0) throw new FrameError('empty frame')
  const headerEnd = itemEnd(bytes, 0, 'header')
  if (headerEnd >= bytes.length) throw new FrameError('frame has no body', { truncated: true })
  const bodyEnd = itemEnd(bytes, headerEnd, 'body')
  if (bodyEnd !== bytes.length) throw new FrameError(`frame has ${bytes.length - bodyEnd} trailing bytes`)

  const header = decodeItem(bytes.subarray(0, headerEnd), 'header')
  if (!isPlainMap(header)) throw new FrameError('frame header is not a map')
  const op = header.op
  if (typeof op !== 'number' || !Number.isInteger(op)) throw new FrameError('frame header op is not an integer')
  const body = decodeItem(bytes.subarray(headerEnd, bodyEnd), 'body')

  if (op === OP_MESSAGE) {
    const t = header.t
    if (typeof t !== 'string' || t.length === 0) throw new FrameError('message frame header has no type (t)')
    if (!isPlainMap(body)) throw new FrameError('message frame body is not a map')
    return { op: OP_MESSAGE, t, body }
  }
  if (op === OP_ERROR) {
    if (!isPlainMap(body)) throw new FrameError('error frame body is not a map')
    if (typeof body.error !== 'string') throw new FrameError('error frame body has no error name')
    const out: ErrorFrame = { op: OP_ERROR, error: body.error }
    if (typeof body.message === 'string') out.message = body.message
    return out
  }
  return { op: 'unknown', header, body }
}
