import {
  jsonToLex,
  lexToJson,
  type LexXrpcProcedure,
  type LexXrpcQuery,
  type LexXrpcSubscription,
  type Lexicons,
} from '@atproto/lexicon'
import { isAtIdentifierString, isAtUriString, isValidDid, isValidHandle, isValidNsid, isValidRecordKey, isValidTid } from '@atproto/syntax'
import { checkBlobConstraints, mimeMatches } from './blob-constraints.js'
import { lexicons as defaultLexicons } from './registry.js'

/** A value (params, input, output, record) that does not match its schema. */
export class LexiconValidationError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'LexiconValidationError'
  }
}

export type MethodDef = LexXrpcQuery | LexXrpcProcedure | LexXrpcSubscription

export type RecordValidationResult =
  | { valid: true; value: Record<string, unknown> }
  | { valid: false; message: string }
  | { valid: 'unknown' }

export interface RecordValidationOptions {
  lexicons?: Lexicons
  /** When given, also checked against the record def's `key` type (tid / nsid / literal:x / any). */
  rkey?: string
  /** The record is in JSON form (e.g. parsed JSON): converted to lex form directly, without a pass through lexToJson. */
  jsonForm?: boolean
}

/** The query / procedure / subscription def of an NSID, or undefined. */
export function getMethodDef(nsid: string, lex: Lexicons = defaultLexicons): MethodDef | undefined {
  let def
  try {
    def = lex.getDef(nsid)
  } catch {
    return undefined
  }
  if (def && (def.type === 'query' || def.type === 'procedure' || def.type === 'subscription')) {
    return def as MethodDef
  }
  return undefined
}

/** Converts JSON-form (`$link`, `$bytes`, JSON blob refs) or lex-form data to lex form. */
export function toLexValue(value: unknown): unknown {
  return jsonToLex(lexToJson(value as never))
}

/**
 * Validates a record against the schema of its collection.
 * - collection unknown to the registry → `{ valid: 'unknown' }` (the caller decides; the PDS accepts
 *   unknown collections in optimistic mode);
 * - known → `{ valid: true, value }` (value in lex form, defaults applied) or `{ valid: false, message }`.
 * The record's `$type` must name the collection. Blob `accept` / `maxSize` constraints are enforced.
 * Accepts JSON-form or lex-form data.
 */
export function validateRecord(
  collection: string,
  record: unknown,
  opts: RecordValidationOptions = {},
): RecordValidationResult {
  const lex = opts.lexicons ?? defaultLexicons
  let def
  try {
    def = lex.getDef(collection)
  } catch {
    def = undefined
  }
  if (!def) return { valid: 'unknown' }
  if (def.type !== 'record') return { valid: false, message: `${collection} is not a record type (${def.type})` }
  if (typeof record !== 'object' || record === null || Array.isArray(record)) {
    return { valid: false, message: 'Record must be an object' }
  }
  if (opts.rkey !== undefined) {
    const keyErr = checkRecordKey(def.key ?? 'any', opts.rkey)
    if (keyErr) return { valid: false, message: keyErr }
  }
  try {
    const lexValue = opts.jsonForm ? jsonToLex(record as never) : toLexValue(record)
    const value = lex.assertValidRecord(collection, lexValue) as Record<string, unknown>
    const blobErr = checkBlobConstraints(lex, collection, value)
    if (blobErr) return { valid: false, message: blobErr }
    return { valid: true, value }
  } catch (err) {
    return { valid: false, message: (err as Error).message }
  }
}

/** Like {@link validateRecord} but throws {@link LexiconValidationError}; unknown collections pass. */
export function assertValidRecord(collection: string, record: unknown, opts: RecordValidationOptions = {}): unknown {
  const res = validateRecord(collection, record, opts)
  if (res.valid === false) throw new LexiconValidationError(res.message)
  return res.valid === true ? res.value : record
}

/** Checks a record key against a record def's `key` ("tid", "nsid", "any", "literal:<value>"). */
export function checkRecordKey(keyType: string, rkey: string): string | null {
  if (!isValidRecordKey(rkey)) return `Invalid record key: ${JSON.stringify(rkey)}`
  if (keyType === 'any') return null
  if (keyType === 'tid') return isValidTid(rkey) ? null : `Record key must be a TID, got ${rkey}`
  if (keyType === 'nsid') return isValidNsid(rkey) ? null : `Record key must be an NSID, got ${rkey}`
  if (keyType.startsWith('literal:')) {
    const literal = keyType.slice('literal:'.length)
    return rkey === literal ? null : `Record key must be "${literal}", got ${rkey}`
  }
  return `Unsupported record key type ${keyType}`
}

type RawParams = URLSearchParams | Record<string, unknown>
type ParamDef = { type: string; items?: { type: string } }

/**
 * Decodes query-string params by their schema: integers (decimal only), booleans (`true` / `false`),
 * arrays from repeated keys (a single value becomes a one-element array). Keys the schema does not
 * define are dropped. Values that do not decode are left as strings, so validation reports them.
 * Already-typed values (numbers, booleans) are left alone.
 */
export function coerceParams(def: MethodDef | undefined, raw: RawParams): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  const props = (def?.parameters?.properties ?? {}) as Record<string, ParamDef>
  for (const [key, propDef] of Object.entries(props)) {
    let values: unknown[]
    if (raw instanceof URLSearchParams) {
      values = raw.getAll(key)
    } else {
      const v = raw[key]
      values = v === undefined ? [] : Array.isArray(v) ? v : [v]
    }
    if (values.length === 0) continue
    if (propDef.type === 'array') {
      const itemType = propDef.items?.type ?? 'string'
      out[key] = values.map((v) => coerceScalar(itemType, v))
    } else {
      out[key] = values.length === 1 ? coerceScalar(propDef.type, values[0]) : values.map((v) => coerceScalar(propDef.type, v))
    }
  }
  return out
}

function coerceScalar(type: string, value: unknown): unknown {
  if (typeof value !== 'string') return value
  if (type === 'integer') {
    if (/^-?\d+$/.test(value)) {
      const n = Number(value)
      if (Number.isSafeInteger(n)) return n
    }
    return value
  }
  if (type === 'boolean') {
    if (value === 'true') return true
    if (value === 'false') return false
    return value
  }
  return value
}

/**
 * Coerces (see {@link coerceParams}) and validates XRPC params; returns them with schema defaults applied.
 * Throws {@link LexiconValidationError}.
 */
export function validateParams(
  nsid: string,
  params: RawParams,
  lex: Lexicons = defaultLexicons,
  /** `generic: true`: @atproto/lexicon's check alone (the oracle of the fast path's differential test) */
  opts: { generic?: boolean } = {},
): Record<string, unknown> {
  const def = getMethodDef(nsid, lex)
  if (!def) throw new LexiconValidationError(`Lexicon not found: ${nsid}`)
  if (params instanceof URLSearchParams && !opts.generic) {
    const fast = fastParams(nsid, def, lex, params)
    if (fast) return fast
  }
  const coerced = coerceParams(def, params)
  // @atproto/lexicon makes (and drops) an error object for every optional param that is absent: without
  // stack traces, which cost more than the rest of the check (a 400 needs none)
  const stackTraceLimit = Error.stackTraceLimit
  Error.stackTraceLimit = 0
  try {
    return (lex.assertValidXrpcParams(nsid, coerced) as Record<string, unknown> | undefined) ?? {}
  } catch (err) {
    throw new LexiconValidationError((err as Error).message, { cause: err })
  } finally {
    Error.stackTraceLimit = stackTraceLimit
  }
}

/**
 * String formats checked by the same @atproto/syntax functions @atproto/lexicon's validators call. A `cid`
 * param (and any other format) is left to the library whenever it is present.
 */
const FAST_FORMATS: Record<string, (v: string) => boolean> = {
  'at-identifier': isAtIdentifierString,
  'at-uri': isAtUriString,
  did: isValidDid,
  handle: isValidHandle,
  nsid: isValidNsid,
  'record-key': isValidRecordKey,
  tid: isValidTid,
}

/** A param of a method whose params are all plain strings: its check, or null to leave a present value to the library. */
interface FastParam {
  key: string
  required: boolean
  check: ((v: string) => boolean) | null
}

/** Per registry and NSID: the params' fast checks, or null when some param is more than a plain string. */
const fastSpecs = new WeakMap<Lexicons, Map<string, FastParam[] | null>>()

function fastSpecOf(nsid: string, def: MethodDef, lex: Lexicons): FastParam[] | null {
  let byNsid = fastSpecs.get(lex)
  if (!byNsid) {
    byNsid = new Map()
    fastSpecs.set(lex, byNsid)
  }
  let spec = byNsid.get(nsid)
  if (spec === undefined) {
    spec = null
    const params = def.parameters
    if (params && params.type === 'params' && typeof params.properties === 'object') {
      const required = new Set(params.required ?? [])
      const out: FastParam[] = []
      for (const [key, prop] of Object.entries(params.properties as Record<string, Record<string, unknown>>)) {
        // a string with nothing but a format (no length, enum, const, default, known values...)
        if (prop.type !== 'string' || Object.keys(prop).some((k) => k !== 'type' && k !== 'format' && k !== 'description')) {
          out.length = 0
          break
        }
        const format = prop.format as string | undefined
        out.push({ key, required: required.has(key), check: format === undefined ? () => true : (FAST_FORMATS[format] ?? null) })
      }
      if (out.length === Object.keys(params.properties).length) spec = out
    }
    byNsid.set(nsid, spec)
  }
  return spec
}

/**
 * {@link validateParams} for methods whose params are all plain strings, when every param checks out (each
 * given at most once, the required ones present, each format valid): the result the library gives for
 * such params (the known params given, in schema order). Undefined leaves the params to the library, which
 * also makes every error message.
 */
function fastParams(nsid: string, def: MethodDef, lex: Lexicons, raw: URLSearchParams): Record<string, unknown> | undefined {
  const spec = fastSpecOf(nsid, def, lex)
  if (!spec) return undefined
  const out: Record<string, unknown> = {}
  for (const p of spec) {
    const values = raw.getAll(p.key)
    if (values.length === 0) {
      if (p.required) return undefined
      continue
    }
    if (values.length > 1 || !p.check || !p.check(values[0]!)) return undefined
    out[p.key] = values[0]
  }
  return out
}

/** True when a Content-Type matches a lexicon encoding (`*\/*`, `type/*`, exact; params ignored). */
export function encodingMatches(lexEncoding: string, contentType: string): boolean {
  return lexEncoding.split(',').some((enc) => mimeMatches(enc, contentType))
}

/** True for JSON encodings the server decodes (application/json, with or without params). */
export function isJsonEncoding(encoding: string): boolean {
  return encoding.split(';')[0]!.trim().toLowerCase() === 'application/json'
}

/**
 * Validates a request body. `encoding` is the request's Content-Type (undefined when no body);
 * `body` is the decoded body (JSON-form or lex-form for JSON; bytes / string / stream otherwise).
 * Returns the body (in lex form, defaults applied, for JSON schemas). Throws {@link LexiconValidationError}.
 */
export function validateInput(
  nsid: string,
  encoding: string | undefined,
  body: unknown,
  lex: Lexicons = defaultLexicons,
  /** `jsonForm: true`: the body is parsed JSON text, converted to lex form directly (no lexToJson pass first) */
  opts: { jsonForm?: boolean } = {},
): unknown {
  const def = getMethodDef(nsid, lex)
  if (!def || def.type === 'subscription') throw new LexiconValidationError(`Lexicon not found: ${nsid}`)
  const input = def.type === 'procedure' ? def.input : undefined
  if (!input) {
    if (body !== undefined) throw new LexiconValidationError('A request body was provided when none was expected')
    return undefined
  }
  if (body === undefined) throw new LexiconValidationError('A request body is expected but none was provided')
  if (!encoding) throw new LexiconValidationError('Request encoding (Content-Type) required but not provided')
  if (!encodingMatches(input.encoding, encoding)) {
    throw new LexiconValidationError(`Wrong request encoding (Content-Type): ${encoding}, expected ${input.encoding}`)
  }
  if (input.schema && isJsonEncoding(input.encoding)) {
    try {
      return lex.assertValidXrpcInput(nsid, opts.jsonForm ? jsonToLex(body as never) : toLexValue(body))
    } catch (err) {
      throw new LexiconValidationError((err as Error).message, { cause: err })
    }
  }
  return body
}

/**
 * Validates a response body against the method's output schema. Throws {@link LexiconValidationError}
 * (messages start with "Output").
 */
export function validateOutput(
  nsid: string,
  encoding: string | undefined,
  body: unknown,
  lex: Lexicons = defaultLexicons,
): unknown {
  const def = getMethodDef(nsid, lex)
  if (!def || def.type === 'subscription') throw new LexiconValidationError(`Lexicon not found: ${nsid}`)
  const output = def.output
  if (!output) {
    if (body !== undefined) throw new LexiconValidationError(`Output: ${nsid} defines no output but a body was returned`)
    return undefined
  }
  if (body === undefined || !encoding) {
    throw new LexiconValidationError(`Output: ${nsid} must return a ${output.encoding} body`)
  }
  if (!encodingMatches(output.encoding, encoding)) {
    throw new LexiconValidationError(`Output: wrong encoding ${encoding}, expected ${output.encoding}`)
  }
  if (output.schema && isJsonEncoding(output.encoding)) {
    try {
      return lex.assertValidXrpcOutput(nsid, toLexValue(body))
    } catch (err) {
      throw new LexiconValidationError((err as Error).message, { cause: err })
    }
  }
  return body
}
