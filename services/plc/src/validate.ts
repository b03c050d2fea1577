/**
 * Pure did:plc operation validation (spec v0.3.0). No I/O: the caller passes the DID's log and the time
 * at which the proposed operation is received, and gets back a decision.
 */
import { parseDidKey, sha256, verifySignature } from '@stratos/core/crypto'
import { CID, cborEncode, cidForCbor } from '@stratos/core/data'
import type {
  AnyPlcOp,
  CompatibleOp,
  DocumentData,
  LegacyCreateOp,
  LogEntry,
  PlcOperation,
  PlcService,
} from './types.js'

/** Maximum size of an operation in DAG-CBOR (signed form). */
export const MAX_OP_BYTES = 7500
/** A higher-authority rotation key may nullify operations younger than this (72 h, inclusive). */
export const RECOVERY_WINDOW_MS = 72 * 60 * 60 * 1000
export const MAX_ROTATION_KEYS = 5
export const MAX_VERIFICATION_METHODS = 10
export const MAX_ALSO_KNOWN_AS = 10
export const MAX_ALSO_KNOWN_AS_LENGTH = 258 // at:// + a 253-char handle
export const MAX_SERVICES = 10
export const MAX_ID_LENGTH = 32
export const MAX_SERVICE_TYPE_LENGTH = 256
export const MAX_SERVICE_ENDPOINT_LENGTH = 512
export const MAX_DID_KEY_LENGTH = 256

export type PlcErrorCode =
  | 'malformed' // not an operation: wrong or missing fields, bad prev CID syntax
  | 'too-large' // over MAX_OP_BYTES in DAG-CBOR
  | 'constraint' // a rule for new operations: key counts, duplicates, key types, legacy create
  | 'bad-signature-encoding' // sig is not strict base64url of 64 bytes
  | 'bad-signature' // sig does not verify (or is high-S) with any allowed rotation key
  | 'genesis-mismatch' // DID is not the hash of the genesis operation
  | 'did-exists' // genesis operation for a DID that already has a log
  | 'did-not-found' // update for a DID without a log
  | 'duplicate' // the same operation is already in the log
  | 'prev-not-found' // prev is not an operation of this DID
  | 'prev-nullified' // prev was nullified
  | 'tombstoned' // prev is a tombstone: nothing may follow it
  | 'insufficient-authority' // fork signed by a key without more authority than the one it would nullify
  | 'late-recovery' // fork would nullify an operation older than 72 h
  | 'timestamp-order' // not later than the DID's most recent operation

export class PlcOpError extends Error {
  constructor(
    readonly code: PlcErrorCode,
    message: string,
  ) {
    super(message)
    this.name = 'PlcOpError'
  }
}

/**
 * 'new': an operation submitted to this directory now (all v0.3.0 constraints for new operations apply).
 * 'replay': an operation from a historical log (accepts legacy `create`, empty or duplicate rotationKeys
 * and the other shapes a directory once accepted; signature, chain and recovery rules still apply).
 */
export type ValidationMode = 'new' | 'replay'

export interface AcceptedOp {
  ok: true
  operation: AnyPlcOp
  /** CIDv1 dag-cbor sha-256 of the signed operation */
  cid: string
  prev: string | null
  /** CIDs of log entries this operation nullifies (oldest first) */
  nullified: string[]
  /** the rotation key (did:key) whose signature verified, and its index in the authorising key list */
  signer: string
  signerIndex: number
  /** the DID state after this operation (null for a tombstone) */
  data: DocumentData | null
}

export interface RejectedOp {
  ok: false
  code: PlcErrorCode
  message: string
}

export type OpValidation = AcceptedOp | RejectedOp

// ---------------------------------------------------------------------------------------------
// Encoding helpers

const B32 = 'abcdefghijklmnopqrstuvwxyz234567'

/** RFC 4648 base32, lower case, no padding. */
export function base32Encode(bytes: Uint8Array): string {
  let out = ''
  let value = 0
  let bits = 0
  for (const byte of bytes) {
    value = (value << 8) | byte
    bits += 8
    while (bits >= 5) {
      out += B32[(value >>> (bits - 5)) & 31]
      bits -= 5
    }
    value &= (1 << bits) - 1
  }
  if (bits > 0) out += B32[(value << (5 - bits)) & 31]
  return out
}

export const PLC_DID_RE = /^did:plc:[a-z2-7]{24}$/

export function isValidPlcDid(did: string): boolean {
  return PLC_DID_RE.test(did)
}

/** The operation without its `sig` field: the bytes that are signed are its DAG-CBOR encoding. */
export function unsignedOp(op: AnyPlcOp): Record<string, unknown> {
  const { sig: _sig, ...rest } = op
  return rest
}

export function signingBytes(op: AnyPlcOp): Uint8Array {
  return cborEncode(unsignedOp(op))
}

/** CIDv1, dag-cbor, sha-256 of the signed operation, as a base32 string. */
export function opCid(op: AnyPlcOp): string {
  return cidForCbor(op).toString()
}

/** `did:plc:` + the first 24 base32 characters of sha-256 over the signed genesis operation's DAG-CBOR. */
export function didForGenesisOp(op: CompatibleOp): string {
  return `did:plc:${base32Encode(sha256(cborEncode(op))).slice(0, 24)}`
}

/**
 * Decodes a `sig` value, refusing anything but canonical base64url: no `=` padding, no whitespace or
 * newlines, zero trailing padding bits (decoding and re-encoding gives the same string), exactly 64 bytes.
 */
export function decodeSignature(sig: string): Uint8Array {
  if (!/^[A-Za-z0-9_-]*$/.test(sig)) {
    if (sig.includes('=')) throw new PlcOpError('bad-signature-encoding', "sig must be base64url without '=' padding")
    if (/\s/.test(sig)) throw new PlcOpError('bad-signature-encoding', 'sig contains whitespace or a newline')
    throw new PlcOpError('bad-signature-encoding', 'sig contains characters outside the base64url alphabet')
  }
  const bytes = new Uint8Array(Buffer.from(sig, 'base64url'))
  if (Buffer.from(bytes).toString('base64url') !== sig) {
    throw new PlcOpError(
      'bad-signature-encoding',
      'sig is not canonical base64url (non-zero trailing padding bits or an impossible length)',
    )
  }
  if (bytes.length !== 64) {
    const der = looksDer(bytes)
    throw new PlcOpError(
      'bad-signature-encoding',
      `sig must be a 64-byte compact (r||s) ECDSA signature, got ${bytes.length} bytes` +
        (der ? ' (looks DER-encoded; DER signatures are refused)' : ''),
    )
  }
  return bytes
}

// ---------------------------------------------------------------------------------------------
// Operation shape

const FIELDS: Record<AnyPlcOp['type'], string[]> = {
  plc_operation: ['type', 'rotationKeys', 'verificationMethods', 'alsoKnownAs', 'services', 'prev', 'sig'],
  plc_tombstone: ['type', 'prev', 'sig'],
  create: ['type', 'signingKey', 'recoveryKey', 'handle', 'service', 'prev', 'sig'],
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return false
  const proto = Object.getPrototypeOf(v)
  return proto === Object.prototype || proto === null
}

function malformed(message: string): never {
  throw new PlcOpError('malformed', message)
}

function ensureStringArray(v: unknown, field: string): string[] {
  if (!Array.isArray(v)) malformed(`${field} must be an array of strings`)
  for (const item of v) if (typeof item !== 'string') malformed(`${field} must be an array of strings`)
  return v as string[]
}

function ensurePrevCid(v: unknown): string {
  if (typeof v !== 'string') malformed('prev must be a CID string')
  let cid: CID
  try {
    cid = CID.parse(v)
  } catch {
    malformed(`prev is not a valid CID: ${JSON.stringify(v)}`)
  }
  if (cid.version !== 1 || cid.code !== 0x71 || cid.multihash.code !== 0x12 || cid.toString() !== v) {
    malformed(`prev must be a base32 CIDv1 (dag-cbor, sha-256): ${JSON.stringify(v)}`)
  }
  return v
}

/** Checks that a JSON value has the exact shape of one of the three operation types. */
export function parseOperation(value: unknown): AnyPlcOp {
  if (!isPlainObject(value)) malformed('operation must be a JSON object')
  const type = value.type
  if (type !== 'plc_operation' && type !== 'plc_tombstone' && type !== 'create') {
    malformed(`unknown operation type ${JSON.stringify(type)} (expected plc_operation, plc_tombstone or create)`)
  }
  const fields = FIELDS[type]
  for (const f of fields) if (!(f in value)) malformed(`${type} is missing the "${f}" field`)
  for (const f of Object.keys(value)) if (!fields.includes(f)) malformed(`${type} has an unexpected field "${f}"`)
  if (typeof value.sig !== 'string') malformed('sig must be a string')

  if (type === 'plc_operation') {
    ensureStringArray(value.rotationKeys, 'rotationKeys')
    ensureStringArray(value.alsoKnownAs, 'alsoKnownAs')
    const vms = value.verificationMethods
    if (!isPlainObject(vms)) malformed('verificationMethods must be an object mapping names to did:key strings')
    for (const [name, key] of Object.entries(vms)) {
      if (typeof key !== 'string') malformed(`verificationMethods.${name} must be a did:key string`)
    }
    const services = value.services
    if (!isPlainObject(services)) malformed('services must be an object mapping names to {type, endpoint}')
    for (const [name, svc] of Object.entries(services)) {
      if (!isPlainObject(svc)) malformed(`services.${name} must be an object with type and endpoint`)
      const keys = Object.keys(svc)
      if (typeof svc.type !== 'string' || typeof svc.endpoint !== 'string' || keys.length !== 2) {
        malformed(`services.${name} must have exactly the string fields type and endpoint`)
      }
    }
    if (value.prev !== null) ensurePrevCid(value.prev)
  } else if (type === 'plc_tombstone') {
    if (value.prev === null) malformed('a tombstone needs prev (the CID of the operation it follows)')
    ensurePrevCid(value.prev)
  } else {
    for (const f of ['signingKey', 'recoveryKey', 'handle', 'service']) {
      if (typeof value[f] !== 'string') malformed(`create.${f} must be a string`)
    }
    if (value.prev !== null) malformed('a legacy create operation must have prev: null')
  }
  return value as unknown as AnyPlcOp
}

const DID_KEY_SYNTAX = /^did:key:z[1-9A-HJ-NP-Za-km-z]+$/

/** The rules v0.3.0 sets for operations submitted now (historical logs predate some of them). */
export function checkNewOpConstraints(op: AnyPlcOp): void {
  const fail: (message: string) => never = (message) => {
    throw new PlcOpError('constraint', message)
  }
  if (op.type === 'create') {
    fail('legacy "create" operations are no longer accepted; submit a plc_operation with prev: null')
  }
  if (op.type !== 'plc_operation') return

  const { rotationKeys, verificationMethods, alsoKnownAs, services } = op
  if (rotationKeys.length < 1 || rotationKeys.length > MAX_ROTATION_KEYS) {
    fail(`rotationKeys must list 1 to ${MAX_ROTATION_KEYS} keys (got ${rotationKeys.length})`)
  }
  const seen = new Set<string>()
  for (const key of rotationKeys) {
    if (seen.has(key)) fail(`rotationKeys has a duplicate entry: ${key}`)
    seen.add(key)
    let curve: string
    try {
      curve = parseDidKey(key).curve
    } catch {
      fail(`rotationKeys entry is not a p256 or k256 did:key: ${key}`)
    }
    if (curve !== 'p256' && curve !== 'k256') fail(`rotationKeys entry is not a p256 or k256 did:key: ${key}`)
  }

  const vms = Object.entries(verificationMethods)
  if (vms.length > MAX_VERIFICATION_METHODS) {
    fail(`too many verificationMethods entries (${vms.length}, max ${MAX_VERIFICATION_METHODS})`)
  }
  for (const [name, key] of vms) {
    checkId(name, 'verificationMethods', fail)
    if (key.length > MAX_DID_KEY_LENGTH) fail(`verificationMethods.${name} key too long (max ${MAX_DID_KEY_LENGTH})`)
    if (!DID_KEY_SYNTAX.test(key)) fail(`verificationMethods.${name} is not a syntactically valid did:key: ${key}`)
  }

  if (alsoKnownAs.length > MAX_ALSO_KNOWN_AS) {
    fail(`too many alsoKnownAs entries (${alsoKnownAs.length}, max ${MAX_ALSO_KNOWN_AS})`)
  }
  const akas = new Set<string>()
  for (const aka of alsoKnownAs) {
    if (aka.length > MAX_ALSO_KNOWN_AS_LENGTH) fail(`alsoKnownAs entry too long (max ${MAX_ALSO_KNOWN_AS_LENGTH}): ${aka}`)
    if (akas.has(aka)) fail(`alsoKnownAs has a duplicate entry: ${aka}`)
    akas.add(aka)
  }

  const svcs = Object.entries(services)
  if (svcs.length > MAX_SERVICES) fail(`too many services entries (${svcs.length}, max ${MAX_SERVICES})`)
  for (const [name, svc] of svcs) {
    checkId(name, 'services', fail)
    if (svc.type.length > MAX_SERVICE_TYPE_LENGTH) fail(`services.${name}.type too long (max ${MAX_SERVICE_TYPE_LENGTH})`)
    if (svc.endpoint.length > MAX_SERVICE_ENDPOINT_LENGTH) {
      fail(`services.${name}.endpoint too long (max ${MAX_SERVICE_ENDPOINT_LENGTH})`)
    }
  }
}

function checkId(name: string, field: string, fail: (m: string) => never): void {
  if (name.length === 0) fail(`${field} has an empty name`)
  if (name.length > MAX_ID_LENGTH) fail(`${field} name too long (max ${MAX_ID_LENGTH}): ${name}`)
  if (name.includes('#')) fail(`${field} names must not include '#': ${name}`)
}

// ---------------------------------------------------------------------------------------------
// Normalisation and state

function ensureHttpPrefix(s: string): string {
  return s.startsWith('http://') || s.startsWith('https://') ? s : `https://${s}`
}

function ensureAtPrefix(s: string): string {
  if (s.startsWith('at://')) return s
  return `at://${s.replace(/^https?:\/\//, '')}`
}

/** Converts a legacy `create` into the equivalent plc_operation (recoveryKey outranks signingKey). */
export function normalizeOp(op: CompatibleOp): PlcOperation {
  if (op.type === 'plc_operation') return op
  const legacy: LegacyCreateOp = op
  return {
    type: 'plc_operation',
    rotationKeys: [legacy.recoveryKey, legacy.signingKey],
    verificationMethods: { atproto: legacy.signingKey },
    alsoKnownAs: [ensureAtPrefix(legacy.handle)],
    services: { atproto_pds: { type: 'AtprotoPersonalDataServer', endpoint: ensureHttpPrefix(legacy.service) } },
    prev: null,
    sig: legacy.sig,
  }
}

/** The keys allowed to sign the operation that follows `op`, in descending authority. */
export function rotationKeysOf(op: AnyPlcOp): string[] {
  if (op.type === 'plc_tombstone') return []
  return normalizeOp(op).rotationKeys
}

/** The DID state an operation leaves behind; null for a tombstone. */
export function opToData(did: string, op: AnyPlcOp): DocumentData | null {
  if (op.type === 'plc_tombstone') return null
  const n = normalizeOp(op)
  return {
    did,
    verificationMethods: { ...n.verificationMethods },
    rotationKeys: [...n.rotationKeys],
    alsoKnownAs: [...n.alsoKnownAs],
    services: Object.fromEntries(Object.entries(n.services).map(([k, v]): [string, PlcService] => [k, { ...v }])),
  }
}

// ---------------------------------------------------------------------------------------------
// Signatures

const HALF_ORDER: Record<string, bigint> = {
  k256: 0xfffffffffffffffffffffffffffffffebaaedce6af48a03bbfd25e8cd0364141n >> 1n,
  p256: 0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551n >> 1n,
}

function bytesToBigInt(bytes: Uint8Array): bigint {
  return BigInt(`0x${Buffer.from(bytes).toString('hex') || '0'}`)
}

/** Index of the first key in `keys` whose signature over `msg` verifies, or -1. */
function findSigner(keys: readonly string[], msg: Uint8Array, sig: Uint8Array): number {
  for (let i = 0; i < keys.length; i++) {
    try {
      if (verifySignature(keys[i]!, msg, sig)) return i
    } catch {
      // an unparseable key in a historical operation simply matches nothing
    }
  }
  return -1
}

function looksDer(sig: Uint8Array): boolean {
  return sig.length >= 8 && sig[0] === 0x30 && sig[1] === sig.length - 2 && sig[2] === 0x02
}

function signatureFailure(keys: readonly string[], sig: Uint8Array, what: string): PlcOpError {
  if (looksDer(sig)) {
    return new PlcOpError(
      'bad-signature',
      `${what}: the signature is DER-encoded (only 64-byte compact r||s signatures are accepted)`,
    )
  }
  const s = bytesToBigInt(sig.subarray(32))
  for (const key of keys) {
    try {
      const half = HALF_ORDER[parseDidKey(key).curve]
      if (half !== undefined && s > half) {
        return new PlcOpError('bad-signature', `${what}: the signature is high-S (only low-S signatures are accepted)`)
      }
    } catch {
      // ignore unparseable keys
    }
  }
  if (keys.length === 0) return new PlcOpError('bad-signature', `${what}: there is no rotation key that may sign it`)
  return new PlcOpError('bad-signature', `${what}: the signature does not verify with any allowed rotation key`)
}

// ---------------------------------------------------------------------------------------------
// The decision

function timeMs(t: Date | string): number {
  return typeof t === 'string' ? Date.parse(t) : t.getTime()
}

function iso(ms: number): string {
  return new Date(ms).toISOString()
}

/**
 * Decides whether `proposed` may be appended to `did`'s log at time `createdAt`.
 *
 * `log` is every operation the directory holds for the DID (nullified ones included), in the order they were
 * accepted. On acceptance, the result lists which entries the new operation nullifies: a fork from an earlier
 * operation `prev` (within 72 h, signed by a rotation key of `prev` with more authority than every key that
 * already signed a successor of `prev`) nullifies all the currently valid operations after `prev`.
 */
export function validateNextOp(
  did: string,
  log: readonly LogEntry[],
  proposed: unknown,
  createdAt: Date,
  opts: { mode?: ValidationMode } = {},
): OpValidation {
  try {
    return validateOrThrow(did, log, proposed, createdAt, opts.mode ?? 'new')
  } catch (err) {
    if (err instanceof PlcOpError) return { ok: false, code: err.code, message: err.message }
    throw err
  }
}

function validateOrThrow(
  did: string,
  log: readonly LogEntry[],
  proposed: unknown,
  createdAt: Date,
  mode: ValidationMode,
): AcceptedOp {
  const op = parseOperation(proposed)
  const size = cborEncode(op).byteLength
  if (size > MAX_OP_BYTES) {
    throw new PlcOpError('too-large', `operation is ${size} bytes in DAG-CBOR, over the ${MAX_OP_BYTES}-byte limit`)
  }
  if (mode === 'new') checkNewOpConstraints(op)
  const sig = decodeSignature(op.sig)
  const cid = opCid(op)
  const msg = signingBytes(op)
  const now = createdAt.getTime()

  // Genesis
  if (log.length === 0) {
    if (op.type === 'plc_tombstone' || op.prev !== null) {
      throw new PlcOpError(
        'did-not-found',
        `DID not registered: ${did} (only a genesis operation, with prev: null, can create it)`,
      )
    }
    const expected = didForGenesisOp(op)
    if (expected !== did) {
      throw new PlcOpError(
        'genesis-mismatch',
        `the DID does not match the hash of the genesis operation (the operation creates ${expected})`,
      )
    }
    const keys = rotationKeysOf(op)
    const signerIndex = findSigner(keys, msg, sig)
    if (signerIndex < 0) throw signatureFailure(keys, sig, 'invalid genesis operation signature')
    return { ok: true, operation: op, cid, prev: null, nullified: [], signer: keys[signerIndex]!, signerIndex, data: opToData(did, op) }
  }

  // Update, tombstone or recovery fork
  if (log.some((e) => e.cid === cid)) {
    throw new PlcOpError('duplicate', `operation ${cid} is already in the log of ${did}`)
  }
  if (op.prev === null) {
    throw new PlcOpError('did-exists', `DID already exists: ${did} (a genesis operation can only create a new DID)`)
  }
  const prevCid = op.prev
  const prevIndex = log.findIndex((e) => e.cid === prevCid)
  if (prevIndex < 0) {
    throw new PlcOpError('prev-not-found', `prev ${prevCid} is not an operation in the log of ${did}`)
  }
  const prevEntry = log[prevIndex]!
  if (prevEntry.nullified) {
    throw new PlcOpError('prev-nullified', `prev ${prevCid} was nullified; operations cannot follow a nullified operation`)
  }
  if (prevEntry.operation.type === 'plc_tombstone') {
    throw new PlcOpError('tombstoned', `DID is tombstoned: no operation may follow the tombstone ${prevCid}`)
  }

  const prevKeys = rotationKeysOf(prevEntry.operation)
  // Every successor of prev (nullified or not) used up the authority of its signing key and all weaker
  // keys: a new successor needs a key that ranks above all of them.
  let allowedCount = prevKeys.length
  let strongestSuccessor: { cid: string; index: number } | null = null
  for (let i = prevIndex + 1; i < log.length; i++) {
    const entry = log[i]!
    if (entry.operation.prev !== prevCid) continue
    const idx = findSigner(prevKeys, signingBytes(entry.operation), decodeSignatureLoose(entry.operation.sig))
    if (idx >= 0 && idx < allowedCount) {
      allowedCount = idx
      strongestSuccessor = { cid: entry.cid, index: idx }
    }
  }
  const allowed = prevKeys.slice(0, allowedCount)
  const signerIndex = findSigner(allowed, msg, sig)
  if (signerIndex < 0) {
    if (strongestSuccessor) {
      const anyIndex = findSigner(prevKeys, msg, sig)
      if (anyIndex >= 0) {
        throw new PlcOpError(
          'insufficient-authority',
          `signed by rotation key #${anyIndex} of prev, but forking past ${strongestSuccessor.cid} (signed by key ` +
            `#${strongestSuccessor.index}) needs a key with higher authority (a lower index)`,
        )
      }
    }
    throw signatureFailure(allowed, sig, 'invalid operation signature')
  }

  // The currently valid operations after prev are the ones this operation replaces.
  const toNullify: LogEntry[] = []
  for (let i = prevIndex + 1; i < log.length; i++) if (!log[i]!.nullified) toNullify.push(log[i]!)

  let head: LogEntry | undefined
  for (let i = log.length - 1; i >= 0; i--) {
    if (!log[i]!.nullified) {
      head = log[i]
      break
    }
  }
  if (head && now <= timeMs(head.createdAt)) {
    throw new PlcOpError(
      'timestamp-order',
      `operation time ${iso(now)} is not after the most recent operation (${iso(timeMs(head.createdAt))})`,
    )
  }
  const first = toNullify[0]
  if (first) {
    const lapsed = now - timeMs(first.createdAt)
    if (lapsed > RECOVERY_WINDOW_MS) {
      throw new PlcOpError(
        'late-recovery',
        `recovery window closed: ${first.cid} was accepted ${iso(timeMs(first.createdAt))}, more than 72 hours ` +
          `before ${iso(now)} (${Math.floor(lapsed / 1000)}s)`,
      )
    }
  }

  return {
    ok: true,
    operation: op,
    cid,
    prev: prevCid,
    nullified: toNullify.map((e) => e.cid),
    signer: allowed[signerIndex]!,
    signerIndex,
    data: opToData(did, op),
  }
}

/** Decodes a stored signature without re-checking strictness (stored entries were checked on the way in). */
function decodeSignatureLoose(sig: string): Uint8Array {
  return new Uint8Array(Buffer.from(sig, 'base64url'))
}

// ---------------------------------------------------------------------------------------------
// Whole logs

export interface ReplayInput {
  operation: unknown
  createdAt: Date | string
  cid?: string
}

export type ReplayResult =
  | { ok: true; log: LogEntry[]; data: DocumentData | null }
  | { ok: false; index: number; code: PlcErrorCode | 'cid-mismatch' | 'bad-timestamp'; message: string; log: LogEntry[] }

/**
 * Replays a DID's audit log op by op with the timestamps it carries (historical rules), returning the log with
 * nullified flags as this validator computes them, or where and why it fails.
 */
export function replayAuditLog(did: string, entries: readonly ReplayInput[]): ReplayResult {
  const log: LogEntry[] = []
  let data: DocumentData | null = null
  for (let i = 0; i < entries.length; i++) {
    const entry = entries[i]!
    const at = new Date(timeMs(entry.createdAt))
    if (Number.isNaN(at.getTime())) {
      return { ok: false, index: i, code: 'bad-timestamp', message: `entry ${i} has an invalid createdAt`, log }
    }
    const res = validateNextOp(did, log, entry.operation, at, { mode: 'replay' })
    if (!res.ok) return { ok: false, index: i, code: res.code, message: res.message, log }
    if (entry.cid !== undefined && entry.cid !== res.cid) {
      return { ok: false, index: i, code: 'cid-mismatch', message: `entry ${i} claims cid ${entry.cid}, computed ${res.cid}`, log }
    }
    const nullified = new Set(res.nullified)
    for (const e of log) if (nullified.has(e.cid)) e.nullified = true
    log.push({ cid: res.cid, operation: res.operation, nullified: false, createdAt: at })
    data = res.data
  }
  return { ok: true, log, data }
}

