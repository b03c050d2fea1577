import { readdirSync } from 'node:fs'
import { describe, expect, it } from 'vitest'
import { Lexicons, createLexicons, parseLexicon, validateRecord } from '@stratos/core/lexicon'
import { interopPath, readInteropJson, reportVectors } from '../util/vectors.js'

interface LexiconVector {
  name: string
  lexicon: unknown
}
interface RecordVector {
  name: string
  rkey: string
  data: { $type: string; [k: string]: unknown }
}

function catalog(): Lexicons {
  const docs = readdirSync(interopPath('lexicon/catalog'))
    .filter((f) => f.endsWith('.json'))
    .map((f) => readInteropJson(`lexicon/catalog/${f}`))
  // a separate registry: the catalog plus the api schemas it refers to (app.bsky.actor.defs#preferences)
  return createLexicons({ dirs: [], docs })
}

describe('lexicon schema vectors', () => {
  it('accepts every lexicon in lexicon-valid.json', () => {
    const vectors = readInteropJson<LexiconVector[]>('lexicon/lexicon-valid.json')
    const failures: string[] = []
    for (const v of vectors) {
      try {
        const doc = parseLexicon(v.lexicon)
        new Lexicons().add(doc)
      } catch (err) {
        failures.push(`${v.name}: ${(err as Error).message}`)
      }
    }
    reportVectors('lexicon-valid.json', vectors.length - failures.length, vectors.length)
    expect(failures).toEqual([])
    expect(vectors.length).toBe(3)
  })

  it('refuses every lexicon in lexicon-invalid.json', () => {
    const vectors = readInteropJson<LexiconVector[]>('lexicon/lexicon-invalid.json')
    const accepted: string[] = []
    for (const v of vectors) {
      try {
        parseLexicon(v.lexicon)
        accepted.push(v.name)
      } catch (err) {
        expect((err as Error).message).toMatch(/Invalid lexicon/)
      }
    }
    reportVectors('lexicon-invalid.json', vectors.length - accepted.length, vectors.length)
    expect(accepted).toEqual([])
    expect(vectors.length).toBe(7)
  })

  it('loads the whole catalog (record, query, procedure, subscription, permission-set)', () => {
    const lex = catalog()
    for (const id of ['record', 'query', 'procedure', 'subscription', 'permissionset']) {
      expect(lex.get(`example.lexicon.${id}`), id).toBeDefined()
    }
  })
})

describe('record data vectors (against lexicon/catalog)', () => {
  const lex = catalog()

  it('accepts every record in record-data-valid.json', () => {
    const vectors = readInteropJson<RecordVector[]>('lexicon/record-data-valid.json')
    const failures: string[] = []
    for (const v of vectors) {
      const res = validateRecord(v.data.$type, v.data, { lexicons: lex, rkey: v.rkey })
      if (res.valid !== true) failures.push(`${v.name}: ${JSON.stringify(res)}`)
    }
    reportVectors('record-data-valid.json', vectors.length - failures.length, vectors.length)
    expect(failures).toEqual([])
    expect(vectors.length).toBe(3)
  })

  it('refuses every record in record-data-invalid.json, with a message', () => {
    const vectors = readInteropJson<RecordVector[]>('lexicon/record-data-invalid.json')
    const accepted: string[] = []
    for (const v of vectors) {
      const res = validateRecord(v.data.$type, v.data, { lexicons: lex, rkey: v.rkey })
      if (res.valid === false) {
        expect(res.message.length, v.name).toBeGreaterThan(0)
      } else {
        accepted.push(`${v.name}: ${JSON.stringify(res).slice(0, 80)}`)
      }
    }
    reportVectors('record-data-invalid.json', vectors.length - accepted.length, vectors.length)
    expect(accepted).toEqual([])
    expect(vectors.length).toBe(50)
  })

  it('applies defaults and keeps the record in lex form', () => {
    const res = validateRecord('example.lexicon.record', { $type: 'example.lexicon.record', integer: 1 }, { lexicons: lex })
    expect(res.valid).toBe(true)
    if (res.valid === true) expect(res.value.defaultInteger).toBe(42)
  })

  it('checks the record key against the def key type (literal:demo)', () => {
    const res = validateRecord('example.lexicon.record', { $type: 'example.lexicon.record', integer: 1 }, { lexicons: lex, rkey: 'other' })
    expect(res).toEqual({ valid: false, message: 'Record key must be "demo", got other' })
  })
})
