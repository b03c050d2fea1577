import { readdirSync } from 'node:fs'
import { TID } from '@atproto/common-web'
import { afterEach, describe, expect, it, vi } from 'vitest'
import * as syntax from '@stratos/core/syntax'
import { InvalidSyntaxError, TidClock, tidFromTime, tidToTimestampUs } from '@stratos/core/syntax'
import { interopPath, readInteropLines, reportVectors } from '../util/vectors.js'

type Check = { isValid: (s: string) => boolean; ensure: (s: string) => void }

const checks: Record<string, Check> = {
  atidentifier: { isValid: syntax.isValidAtIdentifier, ensure: syntax.ensureValidAtIdentifier },
  aturi: { isValid: syntax.isValidAtUri, ensure: syntax.ensureValidAtUri },
  cid: { isValid: syntax.isValidCidString, ensure: syntax.ensureValidCidString },
  datetime: { isValid: syntax.isValidDatetime, ensure: syntax.ensureValidDatetime },
  did: { isValid: syntax.isValidDid, ensure: syntax.ensureValidDid },
  handle: { isValid: syntax.isValidHandle, ensure: syntax.ensureValidHandle },
  language: { isValid: syntax.isValidLanguage, ensure: syntax.ensureValidLanguage },
  nsid: { isValid: syntax.isValidNsid, ensure: syntax.ensureValidNsid },
  recordkey: { isValid: syntax.isValidRecordKey, ensure: syntax.ensureValidRecordKey },
  tid: { isValid: syntax.isValidTid, ensure: syntax.ensureValidTid },
  uri: { isValid: syntax.isValidUri, ensure: syntax.ensureValidUri },
}

/** The full parse for kinds whose vectors include parse_invalid files. */
const fullParse: Record<string, { syntaxOnly: (s: string) => boolean; parse: (s: string) => unknown }> = {
  datetime: { syntaxOnly: syntax.isValidDatetimeSyntax, parse: syntax.parseDatetime },
  language: { syntaxOnly: syntax.isValidLanguage, parse: syntax.ensureParsedLanguage },
}

const throwsSyntaxError = (fn: () => unknown): boolean => {
  try {
    fn()
    return false
  } catch (err) {
    return err instanceof InvalidSyntaxError && err.message.length > 0
  }
}

describe('syntax: every interop vector file', () => {
  const files = readdirSync(interopPath('syntax')).filter((f) => f.endsWith('.txt')).sort()

  it('has a checker for every file', () => {
    expect(files.length).toBeGreaterThanOrEqual(24)
    for (const f of files) {
      const m = /^([a-z]+)_(syntax_valid|syntax_invalid|parse_invalid)\.txt$/.exec(f)
      expect(m, f).not.toBeNull()
      expect(checks[m![1]!], f).toBeDefined()
      if (m![2] === 'parse_invalid') expect(fullParse[m![1]!], f).toBeDefined()
    }
  })

  for (const file of files) {
    const [, kind, mode] = /^([a-z]+)_(syntax_valid|syntax_invalid|parse_invalid)\.txt$/.exec(file) ?? []
    it(file, () => {
      const check = checks[kind!]!
      const lines = readInteropLines(`syntax/${file}`)
      expect(lines.length).toBeGreaterThan(0)
      const failures: string[] = []
      for (const line of lines) {
        let ok: boolean
        if (mode === 'syntax_valid') {
          ok = check.isValid(line) && !throwsSyntaxError(() => check.ensure(line))
          if (fullParse[kind!]) ok &&= !throwsSyntaxError(() => fullParse[kind!]!.parse(line))
        } else if (mode === 'syntax_invalid') {
          ok = !check.isValid(line) && throwsSyntaxError(() => check.ensure(line))
          if (fullParse[kind!]) ok &&= !fullParse[kind!]!.syntaxOnly(line)
        } else {
          // well-formed, but the full parse must refuse it
          const p = fullParse[kind!]!
          ok = p.syntaxOnly(line) && throwsSyntaxError(() => p.parse(line))
          if (kind === 'datetime') ok &&= !syntax.isValidDatetime(line)
          if (kind === 'language') ok &&= syntax.parseLanguage(line) === null
        }
        if (!ok) failures.push(JSON.stringify(line.slice(0, 120)))
      }
      reportVectors(file, lines.length - failures.length, lines.length)
      expect(failures).toEqual([])
    })
  }
})

describe('syntax: details', () => {
  it('parses datetimes to the same instant as Date.parse where JS can parse them', () => {
    const lines = readInteropLines('syntax/datetime_syntax_valid.txt')
    let compared = 0
    for (const line of lines) {
      const js = Date.parse(line)
      if (Number.isNaN(js)) continue
      expect(syntax.parseDatetime(line).getTime(), line).toBe(js)
      compared++
    }
    expect(compared).toBeGreaterThan(25)
    expect(syntax.parseDatetime('1985-04-12T23:20:50.123+01:45').toISOString()).toBe('1985-04-12T21:35:50.123Z')
    expect(syntax.normalizeDatetime('0985-04-12T23:20:50.123-07:00')).toBe('0985-04-13T06:20:50.123Z')
    expect(syntax.isValidDatetime('2024-02-29T00:00:00Z')).toBe(true)
    expect(syntax.isValidDatetime('2023-02-29T00:00:00Z')).toBe(false)
    expect(syntax.isValidDatetime('1900-02-29T00:00:00Z')).toBe(false)
    expect(syntax.isValidDatetime('2000-02-29T00:00:00Z')).toBe(true)
    expect(syntax.isValidDatetime('2000-04-31T00:00:00Z')).toBe(false)
  })

  it('splits AT URIs and says what is wrong', () => {
    expect(syntax.parseAtUri('at://did:plc:asdf123/app.bsky.feed.post/3jwdwj2ctlk26')).toEqual({
      authority: 'did:plc:asdf123',
      collection: 'app.bsky.feed.post',
      rkey: '3jwdwj2ctlk26',
    })
    expect(syntax.parseAtUri('at://alice.test')).toEqual({ authority: 'alice.test' })
    expect(() => syntax.ensureValidAtUri('at://alice.test/')).toThrow(/trailing slash/)
    expect(() => syntax.ensureValidAtUri('at://alice.test/app.bsky.feed.post/a#/x')).toThrow(/fragment/)
    expect(() => syntax.ensureValidHandle('-bad.test')).toThrow(/handle/)
    expect(new syntax.AtUri('at://did:plc:asdf123/app.bsky.feed.post/abc').collection).toBe('app.bsky.feed.post')
  })

  it('normalizes handles and knows the disallowed TLDs', () => {
    expect(syntax.normalizeHandle('Alice.Example.COM')).toBe('alice.example.com')
    expect(syntax.normalizeAndEnsureValidHandle('Alice.Test')).toBe('alice.test')
    expect(syntax.isAllowedHandleTld('alice.onion')).toBe(false)
    expect(syntax.isAllowedHandleTld('alice.com')).toBe(true)
  })

  it('gives language tag structure', () => {
    expect(syntax.parseLanguage('hy-Latn-IT-arevela')).toMatchObject({
      language: 'hy',
      script: 'Latn',
      region: 'IT',
      variants: ['arevela'],
    })
    expect(syntax.parseLanguage('en-u-co-phonebk-t-en-US')?.extensions.map((e) => e.singleton)).toEqual(['u', 't'])
    expect(() => syntax.ensureParsedLanguage('de-DE-1901-1901')).toThrow(/repeated/)
  })
})

describe('syntax: TIDs', () => {
  afterEach(() => {
    vi.restoreAllMocks()
  })

  it('encodes like the reference TID implementation', () => {
    expect(tidFromTime(0, 0)).toBe('2222222222222')
    for (const [us, clock] of [
      [1_700_000_000_000_000, 5],
      [2 ** 53 - 1, 0],
      [1_234_567_890_123_456, 512],
    ] as const) {
      const tid = tidFromTime(us, clock)
      expect(tid).toBe(TID.fromTime(us, clock).toString())
      expect(syntax.isValidTid(tid)).toBe(true)
      expect(tidToTimestampUs(tid)).toBe(us)
      expect(syntax.tidClockId(tid)).toBe(clock)
    }
    // small timestamps are zero-padded (the reference class cannot build these)
    expect(tidFromTime(1, 1023)).toBe('22222222223zz')
    expect(tidToTimestampUs(tidFromTime(1, 1023))).toBe(1)
    expect(() => tidFromTime(2 ** 53, 0)).toThrow(RangeError)
    expect(() => tidFromTime(0, 1024)).toThrow(RangeError)
  })

  it('produces 100k strictly increasing valid TIDs', () => {
    const clock = new TidClock()
    let prev = clock.next()
    for (let i = 0; i < 100_000; i++) {
      const tid = clock.next()
      if (!(tid > prev)) throw new Error(`not increasing at ${i}: ${prev} then ${tid}`)
      prev = tid
    }
    expect(syntax.isValidTid(prev)).toBe(true)
    // timestamps are the wall clock (within a generous margin for 100k ids generated in a burst)
    expect(Math.abs(tidToTimestampUs(prev) / 1000 - Date.now())).toBeLessThan(60_000)
  })

  it('keeps increasing when the wall clock goes backwards or stands still', () => {
    let now = 1_700_000_000_000
    vi.spyOn(Date, 'now').mockImplementation(() => now)
    const clock = new TidClock(7)
    const tids: string[] = []
    for (let i = 0; i < 1000; i++) tids.push(clock.next()) // frozen clock
    now -= 3_600_000 // an hour back
    for (let i = 0; i < 1000; i++) {
      tids.push(clock.next())
      now -= 1
    }
    now += 10_000_000 // jump forward again
    tids.push(clock.next())
    for (let i = 1; i < tids.length; i++) expect(tids[i]! > tids[i - 1]!).toBe(true)
    expect(tidToTimestampUs(tids[0]!)).toBe(1_700_000_000_000_000)
    expect(tidToTimestampUs(tids.at(-1)!)).toBe((1_700_000_000_000 - 3_600_000 - 1000 + 10_000_000) * 1000)
    expect(syntax.tidClockId(tids[0]!)).toBe(7)
  })

  it('next(after) is greater than a given TID from the future', () => {
    const clock = new TidClock()
    const future = tidFromTime((Date.now() + 86_400_000) * 1000, 1023)
    const tid = clock.next(future)
    expect(tid > future).toBe(true)
    expect(clock.next() > tid).toBe(true)
    expect(() => clock.next('not-a-tid')).toThrow(InvalidSyntaxError)
  })
})
