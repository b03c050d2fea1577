import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import {
  BlobRef,
  LexiconValidationError,
  createLexicons,
  defaultLexiconDir,
  getMethodDef,
  isValidLexiconDoc,
  lexicons,
  loadLexiconDir,
  parseLexicon,
  validateInput,
  validateOutput,
  validateParams,
  validateRecord,
} from '@stratos/core/lexicon'
import { CID } from 'multiformats/cid'

const CID_STR = 'bafyreiclp443lavogvhj3d2ob2cxbfuscni2k5jk7bebjzg7khl3esabwq'
const DID = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
const NOW = '2024-05-01T12:00:00.000Z'

const tmp = mkdtempSync(join(tmpdir(), 'stratos-lex-'))
afterAll(() => rmSync(tmp, { recursive: true, force: true }))

function lexDoc(id: string, defs: Record<string, unknown>) {
  return { lexicon: 1, id, defs }
}

describe('registry', () => {
  it("holds the com.atproto, app.bsky, chat.bsky and tools.ozone schemas from @atproto/api, plus this repository's com.stratos ones", () => {
    const ids = [...lexicons].map((d) => d.id)
    for (const id of [
      'com.atproto.repo.createRecord',
      'com.atproto.sync.subscribeRepos',
      'app.bsky.feed.post',
      'chat.bsky.convo.sendMessage',
      'tools.ozone.moderation.emitEvent',
    ]) {
      expect(ids, id).toContain(id)
    }
    const foreign = ids.filter((id) => !/^(com\.atproto|app\.bsky|chat\.bsky|tools\.ozone|com\.stratos)\./.test(id))
    expect(foreign).toEqual([])
    expect(ids.length).toBeGreaterThan(350)
  })

  it("resolves this repository's lexicons/ directory and loads it", () => {
    const dir = defaultLexiconDir()
    expect(dir.endsWith('/lexicons/')).toBe(true)
    expect(existsSync(join(dir, 'README.md'))).toBe(true)
    const own = loadLexiconDir(dir)
    for (const doc of own) expect(lexicons.get(doc.id)).toBeDefined()
  })

  it('loads every *.json under a directory, recursively', () => {
    const dir = join(tmp, 'ok')
    mkdirSync(join(dir, 'org/example/admin'), { recursive: true })
    writeFileSync(
      join(dir, 'org/example/admin/getThing.json'),
      JSON.stringify(
        lexDoc('org.example.admin.getThing', {
          main: {
            type: 'query',
            parameters: { type: 'params', properties: { n: { type: 'integer' } } },
            output: { encoding: 'application/json', schema: { type: 'object', properties: {} } },
          },
        }),
      ),
    )
    writeFileSync(join(dir, 'org/example/thing.json'), JSON.stringify(lexDoc('org.example.thing', { main: { type: 'token' } })))
    writeFileSync(join(dir, 'notes.txt'), 'not a lexicon')
    const docs = loadLexiconDir(dir)
    expect(docs.map((d) => d.id)).toEqual(['org.example.admin.getThing', 'org.example.thing'])
    const lex = createLexicons({ dirs: [dir] })
    expect(getMethodDef('org.example.admin.getThing', lex)?.type).toBe('query')
    expect(lex.get('app.bsky.feed.post')).toBeDefined()
  })

  it('refuses a bad file, naming it, and a duplicate id', () => {
    const bad = join(tmp, 'bad')
    mkdirSync(bad)
    writeFileSync(join(bad, 'x.json'), JSON.stringify(lexDoc('org.example.x', { other: { type: 'record', key: 'any', record: { type: 'object', properties: {} } } })))
    expect(() => loadLexiconDir(bad)).toThrow(/x\.json: Invalid lexicon org.example.x: .*must be the main definition/)
    const dup = join(tmp, 'dup')
    mkdirSync(dup)
    writeFileSync(join(dup, 'post.json'), JSON.stringify(lexDoc('app.bsky.feed.post', { main: { type: 'token' } })))
    expect(() => createLexicons({ dirs: [dup] })).toThrow(/app\.bsky\.feed\.post is already defined/)
    const notJson = join(tmp, 'notjson')
    mkdirSync(notJson)
    writeFileSync(join(notJson, 'y.json'), '{')
    expect(() => loadLexiconDir(notJson)).toThrow(/y\.json: not valid JSON/)
  })

  it('checks lexicon documents beyond the @atproto/lexicon parser', () => {
    expect(isValidLexiconDoc(lexDoc('org.example.a', { main: { type: 'record', key: 'literal:self', record: { type: 'object', properties: {} } } }))).toBe(true)
    expect(isValidLexiconDoc(lexDoc('org.example.a', { main: { type: 'record', key: 'literal:..', record: { type: 'object', properties: {} } } }))).toBe(false)
    expect(isValidLexiconDoc(lexDoc('org.example.a', { main: { type: 'record', key: 'uuid', record: { type: 'object', properties: {} } } }))).toBe(false)
    expect(() => parseLexicon(lexDoc('org.example.a', { thing: { type: 'unknown' } }))).toThrow(/only allowed for fields/)
    // nested objects (allowed by the spec, refused by parseLexiconDoc alone)
    const nested = lexDoc('org.example.nested', {
      main: {
        type: 'object',
        properties: {
          inner: { type: 'object', properties: { deeper: { type: 'array', items: { type: 'object', properties: { n: { type: 'integer' } } } } } },
        },
      },
    })
    expect(parseLexicon(nested)).toEqual(nested)
    // ...but a nested object that is itself broken is still refused
    const broken = structuredClone(nested) as any
    broken.defs.main.properties.inner.properties.deeper.items.properties.n = { type: 'integer', minimum: 'one' }
    expect(isValidLexiconDoc(broken)).toBe(false)
  })
})

describe('validateRecord on app.bsky records', () => {
  const post = (text: string, extra: Record<string, unknown> = {}) => ({ $type: 'app.bsky.feed.post', text, createdAt: NOW, ...extra })
  const image = (mimeType: string, size: number) => ({
    $type: 'app.bsky.embed.images',
    images: [{ alt: '', image: { $type: 'blob', ref: { $link: CID_STR }, mimeType, size } }],
  })

  it('accepts a plain post, and returns it in lex form', () => {
    const res = validateRecord('app.bsky.feed.post', post('hello world', { langs: ['en'], embed: image('image/png', 1000) }))
    expect(res.valid).toBe(true)
    if (res.valid === true) {
      const img = (res.value.embed as any).images[0].image
      expect(img).toBeInstanceOf(BlobRef)
      expect(img.ref.toString()).toBe(CID_STR)
    }
  })

  it('accepts lex-form data (BlobRef, CID) as well as JSON', () => {
    const blob = new BlobRef(CID.parse(CID_STR), 'image/jpeg', 100)
    const rec = post('x', { embed: { $type: 'app.bsky.embed.images', images: [{ alt: 'a', image: blob }] } })
    expect(validateRecord('app.bsky.feed.post', rec).valid).toBe(true)
  })

  it('refuses a post of 3001 graphemes, and one over 300 graphemes but under 3000 bytes', () => {
    const long = validateRecord('app.bsky.feed.post', post('a'.repeat(3001)))
    expect(long.valid).toBe(false)
    const graphemes = validateRecord('app.bsky.feed.post', post('é'.repeat(301)))
    expect(graphemes).toEqual({ valid: false, message: 'Record/text must not be longer than 300 graphemes' })
    expect(validateRecord('app.bsky.feed.post', post('é'.repeat(300))).valid).toBe(true)
    // 300 family emoji: 300 graphemes, but 7500 UTF-8 bytes
    const bytes = validateRecord('app.bsky.feed.post', post('👩‍👩‍👦‍👦'.repeat(300)))
    expect(bytes).toEqual({ valid: false, message: 'Record/text must not be longer than 3000 characters' })
  })

  it('refuses a like without a subject, and a $type that is not the collection', () => {
    const like = validateRecord('app.bsky.feed.like', { $type: 'app.bsky.feed.like', createdAt: NOW })
    expect(like).toEqual({ valid: false, message: 'Record must have the property "subject"' })
    const ok = validateRecord('app.bsky.feed.like', {
      $type: 'app.bsky.feed.like',
      createdAt: NOW,
      subject: { uri: `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`, cid: CID_STR },
    })
    expect(ok.valid).toBe(true)
    const wrong = validateRecord('app.bsky.feed.like', post('hi'))
    expect(wrong.valid).toBe(false)
    if (wrong.valid === false) expect(wrong.message).toMatch(/Invalid \$type/)
  })

  it('enforces blob maxSize and accept from the schema', () => {
    const big = validateRecord('app.bsky.feed.post', post('x', { embed: image('image/png', 2_000_001) }))
    expect(big.valid).toBe(false)
    if (big.valid === false) expect(big.message).toMatch(/too big: 2000001 bytes, at most 2000000/)
    const mime = validateRecord('app.bsky.feed.post', post('x', { embed: image('video/mp4', 10) }))
    expect(mime.valid).toBe(false)
    if (mime.valid === false) expect(mime.message).toMatch(/video\/mp4 is not accepted/)
  })

  it("reports 'unknown' for a collection no schema defines, and refuses a non-record NSID", () => {
    expect(validateRecord('com.example.thing', { $type: 'com.example.thing', anything: 1 })).toEqual({ valid: 'unknown' })
    expect(validateRecord('app.bsky.feed.getTimeline', { $type: 'app.bsky.feed.getTimeline' }).valid).toBe(false)
    expect(validateRecord('app.bsky.feed.post', 'text').valid).toBe(false)
  })

  it('gives the same answers for a record declared in JSON form (jsonForm: no pass through lexToJson)', () => {
    const cases: [string, Record<string, unknown>][] = [
      ['app.bsky.feed.post', post('hello', { langs: ['en'], embed: image('image/png', 1000) })],
      ['app.bsky.feed.post', post('x', { embed: image('image/png', 2_000_001) })],
      ['app.bsky.feed.post', post('x', { embed: image('video/mp4', 10) })],
      ['app.bsky.feed.post', post('a'.repeat(3001))],
      ['app.bsky.feed.post', post('x', { facets: [{ index: { byteStart: 0, byteEnd: 1 }, features: [{ $type: 'app.bsky.richtext.facet#link', uri: 'https://x.y' }] }] })],
      ['app.bsky.feed.like', { $type: 'app.bsky.feed.like', createdAt: NOW, subject: { uri: `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`, cid: CID_STR } }],
      ['app.bsky.feed.like', { $type: 'app.bsky.feed.like', createdAt: NOW }],
      ['com.example.thing', { $type: 'com.example.thing', link: { $link: CID_STR }, data: { $bytes: 'AAEC' } }],
    ]
    for (const [collection, json] of cases) {
      const asJson = validateRecord(collection, json, { rkey: '3kznmn7xqxl22', jsonForm: true })
      expect(asJson).toEqual(validateRecord(collection, json, { rkey: '3kznmn7xqxl22' }))
    }
  })

  it('checks the record key against the key type', () => {
    expect(validateRecord('app.bsky.actor.profile', { $type: 'app.bsky.actor.profile' }, { rkey: 'self' }).valid).toBe(true)
    expect(validateRecord('app.bsky.actor.profile', { $type: 'app.bsky.actor.profile' }, { rkey: 'other' }).valid).toBe(false)
    expect(validateRecord('app.bsky.feed.post', post('x'), { rkey: '3kznmn7xqxl22' }).valid).toBe(true)
    expect(validateRecord('app.bsky.feed.post', post('x'), { rkey: 'not-a-tid' }).valid).toBe(false)
  })
})

describe('params, input and output', () => {
  it('coerces query-string params and applies defaults', () => {
    const params = validateParams('app.bsky.feed.getAuthorFeed', new URLSearchParams('actor=alice.test&limit=10&includePins=true&bogus=1'))
    expect(params).toEqual({ actor: 'alice.test', limit: 10, includePins: true, filter: 'posts_with_replies' })
    expect(validateParams('app.bsky.feed.getAuthorFeed', { actor: 'alice.test' })).toEqual({
      actor: 'alice.test',
      limit: 50,
      filter: 'posts_with_replies',
      includePins: false,
    })
  })

  it('validates subscription params too (for the stream endpoints)', () => {
    expect(validateParams('com.atproto.sync.subscribeRepos', new URLSearchParams('cursor=42'))).toEqual({ cursor: 42 })
    expect(() => validateParams('com.atproto.sync.subscribeRepos', new URLSearchParams('cursor=-'))).toThrow('cursor must be an integer')
    expect(() => validateParams('com.example.nothing', {})).toThrow('Lexicon not found: com.example.nothing')
  })

  it('builds arrays from repeated keys (and from a single value)', () => {
    expect(validateParams('app.bsky.actor.getProfiles', new URLSearchParams('actors=a.test&actors=b.test'))).toEqual({ actors: ['a.test', 'b.test'] })
    expect(validateParams('app.bsky.actor.getProfiles', new URLSearchParams('actors=a.test'))).toEqual({ actors: ['a.test'] })
  })

  it('refuses bad params with the validator message', () => {
    const bad = (q: string) => () => validateParams('app.bsky.feed.getAuthorFeed', new URLSearchParams(q))
    expect(bad('actor=alice.test&limit=ten')).toThrow(LexiconValidationError)
    expect(bad('actor=alice.test&limit=ten')).toThrow('limit must be an integer')
    expect(bad('actor=alice.test&limit=1.5')).toThrow('limit must be an integer')
    expect(bad('actor=alice.test&limit=1000')).toThrow('limit can not be greater than 100')
    expect(bad('actor=alice.test&includePins=yes')).toThrow('includePins must be a boolean')
    expect(bad('limit=5')).toThrow('Params must have the property "actor"')
    expect(bad('actor=alice.test&actor=bob.test')).toThrow(/actor/)
  })

  it('validates JSON input against the procedure schema', () => {
    const body = { repo: DID, collection: 'app.bsky.feed.post', record: { text: 'x' } }
    expect(validateInput('com.atproto.repo.createRecord', 'application/json', body)).toEqual(body)
    expect(() => validateInput('com.atproto.repo.createRecord', 'application/json', { repo: DID })).toThrow('Input must have the property "collection"')
    expect(() => validateInput('com.atproto.repo.createRecord', 'text/plain', body)).toThrow(/Wrong request encoding/)
    expect(() => validateInput('com.atproto.repo.createRecord', undefined, undefined)).toThrow(/body is expected/)
    expect(() => validateInput('app.bsky.feed.getTimeline', 'application/json', {})).toThrow(/none was expected/)
  })

  it('accepts any encoding where the lexicon says */*', () => {
    const bytes = new Uint8Array([1, 2, 3])
    expect(validateInput('com.atproto.repo.uploadBlob', 'image/png', bytes)).toBe(bytes)
    expect(validateInput('com.atproto.repo.uploadBlob', 'application/json; charset=utf-8', bytes)).toBe(bytes)
    expect(() => validateInput('com.atproto.repo.importRepo', 'application/json', bytes)).toThrow(/Wrong request encoding/)
  })

  it('validates output', () => {
    const ok = { uri: `at://${DID}/app.bsky.feed.post/3kznmn7xqxl22`, cid: CID_STR, value: { $type: 'app.bsky.feed.post', text: 'x', createdAt: NOW } }
    expect(validateOutput('com.atproto.repo.getRecord', 'application/json', ok)).toBeTruthy()
    expect(() => validateOutput('com.atproto.repo.getRecord', 'application/json', { cid: CID_STR })).toThrow('Output must have the property "uri"')
    expect(() => validateOutput('com.atproto.repo.getRecord', undefined, undefined)).toThrow(/must return/)
  })

  it('finds method defs by NSID', () => {
    expect(getMethodDef('app.bsky.feed.getTimeline')?.type).toBe('query')
    expect(getMethodDef('com.atproto.repo.createRecord')?.type).toBe('procedure')
    expect(getMethodDef('com.atproto.sync.subscribeRepos')?.type).toBe('subscription')
    expect(getMethodDef('app.bsky.feed.post')).toBeUndefined()
    expect(getMethodDef('com.example.nothing')).toBeUndefined()
    expect(getMethodDef('not an nsid')).toBeUndefined()
  })
})
