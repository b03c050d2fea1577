import { parseLexiconDoc, type LexiconDoc } from '@atproto/lexicon'
import { isValidRecordKey } from '@atproto/syntax'

/** Thrown when a lexicon document (a schema file) is not acceptable. */
export class LexiconDocError extends Error {
  constructor(message: string, options?: ErrorOptions) {
    super(message, options)
    this.name = 'LexiconDocError'
  }
}

const PRIMARY_TYPES = new Set(['record', 'query', 'procedure', 'subscription', 'permission-set'])

/**
 * Parses and checks a lexicon document.
 *
 * @atproto/lexicon's `parseLexiconDoc` does the structural work (the `lexicon: 1` marker, an NSID `id`,
 * known def types, primary types only as `main`). On top of that this refuses what the spec refuses and
 * that parser lets through:
 * - a named definition of type `unknown` (`unknown` is a field type; a def of it describes nothing);
 * - a record whose `key` is not `tid`, `nsid`, `any` or `literal:<record key>`.
 * And it accepts what the spec allows and that parser refuses: an `object` nested directly in an object's
 * properties or an array's items (the interop catalog uses them). For the structural check such objects
 * are moved into named defs and replaced by refs; the document returned is the original one (the
 * @atproto/lexicon validators handle nested objects at run time).
 */
export function parseLexicon(doc: unknown): LexiconDoc {
  let parsed: LexiconDoc
  try {
    parseLexiconDoc(hoistNestedObjects(doc))
    parsed = doc as LexiconDoc
  } catch (err) {
    const id = isPlainObject(doc) && typeof doc.id === 'string' ? doc.id : '(no valid id)'
    throw new LexiconDocError(`Invalid lexicon ${id}: ${summarizeZodError(err)}`, { cause: err })
  }
  for (const [name, def] of Object.entries(parsed.defs)) {
    if ((def as { type: string }).type === 'unknown') {
      throw new LexiconDocError(
        `Invalid lexicon ${parsed.id}: def "${name}" has type "unknown", which is only allowed for fields`,
      )
    }
    if (PRIMARY_TYPES.has(def.type) && name !== 'main') {
      // parseLexiconDoc checks this too; kept so the rule holds whatever the library version
      throw new LexiconDocError(
        `Invalid lexicon ${parsed.id}: primary type "${def.type}" must be the "main" def, not "${name}"`,
      )
    }
    if (def.type === 'record' && def.key !== undefined && !isValidRecordKeyType(def.key)) {
      throw new LexiconDocError(
        `Invalid lexicon ${parsed.id}: record key type "${def.key}" must be tid, nsid, any or literal:<rkey>`,
      )
    }
  }
  return parsed
}

/** True when `doc` is a lexicon document {@link parseLexicon} accepts. */
export function isValidLexiconDoc(doc: unknown): boolean {
  try {
    parseLexicon(doc)
    return true
  } catch {
    return false
  }
}

export function isValidRecordKeyType(key: string): boolean {
  if (key === 'tid' || key === 'nsid' || key === 'any') return true
  if (key.startsWith('literal:')) return isValidRecordKey(key.slice('literal:'.length))
  return false
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** zod errors stringify as a JSON array of issues; turn them into one readable line. */
function summarizeZodError(err: unknown): string {
  const issues = (err as { issues?: unknown }).issues
  if (Array.isArray(issues) && issues.length > 0) {
    return issues
      .map((issue: { path?: (string | number)[]; message?: string }) => {
        const path = issue.path && issue.path.length > 0 ? issue.path.join('.') + ': ' : ''
        return path + (issue.message ?? 'invalid')
      })
      .join('; ')
  }
  return err instanceof Error ? err.message : String(err)
}

type Json = Record<string, unknown>

/**
 * A copy of `doc` in which every object nested in object properties or array items has become a
 * `ref` to a new def, so that @atproto/lexicon's document schema (which only allows refs there)
 * can check everything else. Non-object input is returned as is (the parser reports it).
 */
function hoistNestedObjects(doc: unknown): unknown {
  if (!isPlainObject(doc) || !isPlainObject(doc.defs)) return doc
  const copy = structuredClone(doc) as Json & { defs: Record<string, unknown> }
  const defs = copy.defs
  const newDefs: Record<string, unknown> = {}
  const taken = new Set(Object.keys(defs))
  const hoist = (node: Json, path: string[]): Json => {
    let name = `nested-${path.join('-')}`
    while (taken.has(name)) name += '_'
    taken.add(name)
    newDefs[name] = node
    visitObject(node, path)
    return { type: 'ref', ref: `#${name}` }
  }
  const visitField = (node: unknown, path: string[]): unknown => {
    if (!isPlainObject(node)) return node
    if (node.type === 'object') return hoist(node, path)
    if (node.type === 'array') visitArray(node, path)
    return node
  }
  const visitArray = (node: Json, path: string[]) => {
    if (isPlainObject(node.items)) node.items = visitField(node.items, [...path, 'items'])
  }
  const visitObject = (node: Json, path: string[]) => {
    if (!isPlainObject(node.properties)) return
    for (const [key, prop] of Object.entries(node.properties)) {
      node.properties[key] = visitField(prop, [...path, key])
    }
  }
  const visitBody = (body: unknown, path: string[]) => {
    if (isPlainObject(body) && isPlainObject(body.schema) && body.schema.type === 'object') {
      visitObject(body.schema, path)
    }
  }
  for (const [name, def] of Object.entries(defs)) {
    if (!isPlainObject(def)) continue
    switch (def.type) {
      case 'object':
        visitObject(def, [name])
        break
      case 'array':
        visitArray(def, [name])
        break
      case 'record':
        if (isPlainObject(def.record) && def.record.type === 'object') visitObject(def.record, [name, 'record'])
        break
      case 'query':
      case 'procedure':
      case 'subscription':
        visitBody(def.input, [name, 'input'])
        visitBody(def.output, [name, 'output'])
        visitBody(def.message, [name, 'message'])
        break
    }
  }
  Object.assign(defs, newDefs)
  return copy
}
