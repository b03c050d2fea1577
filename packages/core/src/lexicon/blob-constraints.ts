import { BlobRef, type Lexicons } from '@atproto/lexicon'

/**
 * Checks the `accept` (MIME patterns) and `maxSize` (bytes) constraints of every blob field in a value
 * that already passed schema validation. @atproto/lexicon's validator only checks that a blob field holds
 * a blob ref; the spec makes these two constraints part of the schema, so they are checked here.
 *
 * `lexUri` names the def the value was validated against (`nsid` or `nsid#def`); `value` is in lex form
 * (blobs as `BlobRef`). Returns an error message, or null when every blob fits.
 */
export function checkBlobConstraints(lex: Lexicons, lexUri: string, value: unknown, path = 'Record'): string | null {
  const uri = normalizeLexUri(lexUri)
  const def = lex.getDef(uri)
  if (!def) return null
  return walk(lex, uri, def as AnyDef, value, path)
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyDef = { type: string; [k: string]: any }

function walk(lex: Lexicons, baseUri: string, def: AnyDef, value: unknown, path: string): string | null {
  if (value === undefined || value === null) return null
  switch (def.type) {
    case 'record':
      return walk(lex, baseUri, def.record as AnyDef, value, path)
    case 'object':
    case 'params': {
      if (typeof value !== 'object') return null
      const props = (def.properties ?? {}) as Record<string, AnyDef>
      for (const [key, propDef] of Object.entries(props)) {
        const err = walk(lex, baseUri, propDef, (value as Record<string, unknown>)[key], `${path}/${key}`)
        if (err) return err
      }
      return null
    }
    case 'array': {
      if (!Array.isArray(value)) return null
      const items = def.items as AnyDef
      for (let i = 0; i < value.length; i++) {
        const err = walk(lex, baseUri, items, value[i], `${path}/${i}`)
        if (err) return err
      }
      return null
    }
    case 'ref': {
      const target = resolve(lex, baseUri, def.ref as string)
      return target ? walk(lex, target.uri, target.def, value, path) : null
    }
    case 'union': {
      const $type = (value as { $type?: unknown }).$type
      if (typeof $type !== 'string') return null
      const wanted = normalizeLexUri($type)
      for (const ref of def.refs as string[]) {
        const target = resolve(lex, baseUri, ref)
        if (target && target.uri === wanted) return walk(lex, target.uri, target.def, value, path)
      }
      return null
    }
    case 'blob':
      return checkBlob({ accept: def.accept, maxSize: def.maxSize }, value, path)
    default:
      return null
  }
}

function checkBlob(def: { accept?: string[]; maxSize?: number }, value: unknown, path: string): string | null {
  const blob = value instanceof BlobRef ? value : BlobRef.asBlobRef(value)
  if (!blob) return null
  if (typeof def.maxSize === 'number' && blob.size > def.maxSize) {
    return `${path} blob is too big: ${blob.size} bytes, at most ${def.maxSize} allowed`
  }
  if (def.accept && def.accept.length > 0 && !def.accept.some((pattern) => mimeMatches(pattern, blob.mimeType))) {
    return `${path} blob MIME type ${blob.mimeType} is not accepted (expected ${def.accept.join(', ')})`
  }
  return null
}

/** `image/*` matches `image/png`; `*\/*` matches anything; otherwise the types must be equal (no params). */
export function mimeMatches(pattern: string, mimeType: string): boolean {
  const p = pattern.trim().toLowerCase()
  const m = mimeType.split(';')[0]!.trim().toLowerCase()
  if (p === '*/*' || p === '*') return true
  if (p.endsWith('/*')) return m.startsWith(p.slice(0, -1))
  return p === m
}

function resolve(lex: Lexicons, baseUri: string, ref: string): { uri: string; def: AnyDef } | null {
  const uri = normalizeLexUri(ref.startsWith('#') ? baseUri.split('#')[0] + ref : ref)
  const def = lex.getDef(uri)
  return def ? { uri, def: def as AnyDef } : null
}

/** `lex:a.b.c#main` form, whatever the input (`a.b.c`, `a.b.c#def`, `lex:a.b.c`). */
export function normalizeLexUri(uri: string): string {
  const bare = uri.startsWith('lex:') ? uri.slice(4) : uri
  return 'lex:' + (bare.includes('#') ? bare : `${bare}#main`)
}
