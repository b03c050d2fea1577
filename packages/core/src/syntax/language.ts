/**
 * BCP 47 language tags (RFC 5646). `isValidLanguage` checks well-formedness with the atproto interop
 * conventions (primary language subtag lowercase, 2–3 letters; grandfathered and private-use tags
 * allowed). `parseLanguage` additionally enforces RFC 5646 §2.2.5/§2.2.6 validity: no repeated
 * variant subtag and no repeated extension singleton (both case-insensitive).
 */
import { InvalidSyntaxError } from './errors.js'

export interface LanguageTag {
  /** the tag as given */
  tag: string
  language?: string
  extlang?: string[]
  script?: string
  region?: string
  variants: string[]
  extensions: { singleton: string; subtags: string[] }[]
  privateUse: string[]
  grandfathered?: string
}

const GRANDFATHERED = new Set(
  [
    'en-GB-oed', 'i-ami', 'i-bnn', 'i-default', 'i-enochian', 'i-hak', 'i-klingon', 'i-lux', 'i-mingo',
    'i-navajo', 'i-pwn', 'i-tao', 'i-tay', 'i-tsu', 'sgn-BE-FR', 'sgn-BE-NL', 'sgn-CH-DE',
    'art-lojban', 'cel-gaulish', 'no-bok', 'no-nyn', 'zh-guoyu', 'zh-hakka', 'zh-min', 'zh-min-nan', 'zh-xiang',
  ].map((t) => t.toLowerCase()),
)

const ALPHA = /^[A-Za-z]+$/
const DIGIT = /^[0-9]+$/
const ALNUM = /^[A-Za-z0-9]+$/

/** Parses the structure; returns a reason string when the tag is not well-formed. */
function parseStructure(tag: string): LanguageTag | string {
  if (typeof tag !== 'string' || tag.length === 0) return 'empty'
  const out: LanguageTag = { tag, variants: [], extensions: [], privateUse: [] }
  if (GRANDFATHERED.has(tag.toLowerCase())) {
    out.grandfathered = tag
    return out
  }
  const sub = tag.split('-')
  if (sub.some((s) => s.length === 0 || s.length > 8 || !ALNUM.test(s))) return 'subtags must be 1–8 letters/digits'
  let i = 0
  const at = () => sub[i]
  // privateuse-only tag: x-...
  if (at()!.toLowerCase() === 'x') {
    i++
    if (i >= sub.length) return 'private-use tag needs at least one subtag'
    out.privateUse = sub.slice(i)
    return out
  }
  const primary = at()!
  if (!/^[a-z]{2,3}$/.test(primary)) return 'primary language subtag must be 2–3 lowercase letters'
  out.language = primary
  i++
  // extlang: up to 3 three-letter subtags
  const extlang: string[] = []
  while (extlang.length < 3 && i < sub.length && sub[i]!.length === 3 && ALPHA.test(sub[i]!)) extlang.push(sub[i++]!)
  if (extlang.length) out.extlang = extlang
  if (i < sub.length && sub[i]!.length === 4 && ALPHA.test(sub[i]!)) out.script = sub[i++]
  if (i < sub.length && ((sub[i]!.length === 2 && ALPHA.test(sub[i]!)) || (sub[i]!.length === 3 && DIGIT.test(sub[i]!)))) {
    out.region = sub[i++]
  }
  // variants: 5–8 alphanumerics, or a digit followed by 3 alphanumerics
  while (i < sub.length && (sub[i]!.length >= 5 || (sub[i]!.length === 4 && /^[0-9]/.test(sub[i]!)))) {
    out.variants.push(sub[i++]!)
  }
  // extensions: singleton (not x) followed by one or more 2–8 char subtags
  while (i < sub.length && sub[i]!.length === 1 && sub[i]!.toLowerCase() !== 'x') {
    const singleton = sub[i++]!
    const subtags: string[] = []
    while (i < sub.length && sub[i]!.length >= 2) subtags.push(sub[i++]!)
    if (subtags.length === 0) return `extension ${singleton} has no subtags`
    out.extensions.push({ singleton, subtags })
  }
  if (i < sub.length && sub[i]!.toLowerCase() === 'x') {
    i++
    if (i >= sub.length) return 'private-use section needs at least one subtag'
    out.privateUse = sub.slice(i)
    i = sub.length
  }
  if (i < sub.length) return `unexpected subtag "${sub[i]}"`
  return out
}

/** Well-formed BCP 47 tag (see module comment). */
export function isValidLanguage(s: string): boolean {
  return typeof parseStructure(s) !== 'string'
}

export function ensureValidLanguage(s: string): void {
  const r = parseStructure(s)
  if (typeof r === 'string') {
    throw new InvalidSyntaxError(`invalid language tag ${JSON.stringify(String(s).slice(0, 100))}: ${r}`)
  }
}

function validity(t: LanguageTag): string | null {
  const variants = new Set<string>()
  for (const v of t.variants) {
    const k = v.toLowerCase()
    if (variants.has(k)) return `variant subtag "${v}" is repeated`
    variants.add(k)
  }
  const singletons = new Set<string>()
  for (const e of t.extensions) {
    const k = e.singleton.toLowerCase()
    if (singletons.has(k)) return `extension singleton "${e.singleton}" is repeated`
    singletons.add(k)
  }
  return null
}

/**
 * Full parse: well-formed and valid (no repeated variant or extension singleton). Returns null when the
 * tag fails either.
 */
export function parseLanguage(s: string): LanguageTag | null {
  const r = parseStructure(s)
  if (typeof r === 'string' || validity(r) !== null) return null
  return r
}

/** Like parseLanguage, throwing InvalidSyntaxError with the reason. */
export function ensureParsedLanguage(s: string): LanguageTag {
  const r = parseStructure(s)
  const reason = typeof r === 'string' ? r : validity(r)
  if (reason !== null) {
    throw new InvalidSyntaxError(`invalid language tag ${JSON.stringify(String(s).slice(0, 100))}: ${reason}`)
  }
  return r as LanguageTag
}
