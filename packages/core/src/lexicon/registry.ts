import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { schemas as apiSchemas } from '@atproto/api'
import { Lexicons, type LexiconDoc } from '@atproto/lexicon'
import { LexiconDocError, parseLexicon } from './doc.js'

/** The NSID namespaces taken from the schema set that @atproto/api exports. */
export const API_NAMESPACES = ['com.atproto.', 'app.bsky.', 'chat.bsky.', 'tools.ozone.'] as const

/**
 * This repository's own lexicon directory (`<repo>/lexicons`). The path is resolved from this file, which
 * sits at the same depth in `src/lexicon` and `dist/lexicon`, so it holds for both; `STRATOS_LEXICON_DIR`
 * overrides it (for deployments that ship the lexicons elsewhere).
 */
export function defaultLexiconDir(): string {
  const fromEnv = process.env.STRATOS_LEXICON_DIR
  if (fromEnv) return fromEnv
  return fileURLToPath(new URL('../../../../lexicons/', import.meta.url))
}

/** The com.atproto / app.bsky / chat.bsky / tools.ozone schemas shipped with @atproto/api. */
export function apiLexiconDocs(): LexiconDoc[] {
  return (apiSchemas as LexiconDoc[]).filter((doc) => API_NAMESPACES.some((ns) => doc.id.startsWith(ns)))
}

/**
 * Reads every `*.json` under `dir` (recursively, in a stable order) and checks each as a lexicon
 * document. Throws a {@link LexiconDocError} naming the file on the first bad one. A missing directory
 * yields no documents.
 */
export function loadLexiconDir(dir: string): LexiconDoc[] {
  if (!existsSync(dir)) return []
  const docs: LexiconDoc[] = []
  for (const file of listJsonFiles(dir)) {
    let json: unknown
    try {
      json = JSON.parse(readFileSync(file, 'utf8'))
    } catch (err) {
      throw new LexiconDocError(`${file}: not valid JSON (${(err as Error).message})`, { cause: err })
    }
    try {
      docs.push(parseLexicon(json))
    } catch (err) {
      throw new LexiconDocError(`${file}: ${(err as Error).message}`, { cause: err })
    }
  }
  return docs
}

function listJsonFiles(dir: string): string[] {
  const out: string[] = []
  for (const name of readdirSync(dir).sort()) {
    if (name.startsWith('.')) continue
    const full = join(dir, name)
    const st = statSync(full)
    if (st.isDirectory()) out.push(...listJsonFiles(full))
    else if (st.isFile() && name.endsWith('.json')) out.push(full)
  }
  return out
}

export interface CreateLexiconsOptions {
  /** Include the @atproto/api schema set (default true). */
  apiSchemas?: boolean
  /** Directories of lexicon JSON files to load (default: this repository's `lexicons/`). */
  dirs?: string[]
  /** More documents (checked with {@link parseLexicon}). */
  docs?: unknown[]
}

/**
 * Builds a registry. Two documents with the same id are refused (a project lexicon may not silently
 * replace a reference one).
 */
export function createLexicons(opts: CreateLexiconsOptions = {}): Lexicons {
  const lex = new Lexicons()
  const add = (doc: LexiconDoc, origin: string) => {
    if (lex.get(doc.id)) throw new LexiconDocError(`${origin}: lexicon ${doc.id} is already defined`)
    lex.add(doc)
  }
  if (opts.apiSchemas !== false) {
    for (const doc of apiLexiconDocs()) add(doc, '@atproto/api')
  }
  for (const dir of opts.dirs ?? [defaultLexiconDir()]) {
    for (const doc of loadLexiconDir(dir)) add(doc, dir)
  }
  for (const doc of opts.docs ?? []) add(parseLexicon(doc), 'docs option')
  return lex
}

/**
 * The registry every service uses: the com.atproto.*, app.bsky.*, chat.bsky.* and tools.ozone.* schemas
 * from @atproto/api plus this repository's `lexicons/**\/*.json`.
 */
export const lexicons: Lexicons = createLexicons()
