export { AtUri, NSID } from '@atproto/syntax'
export { InvalidSyntaxError } from './errors.js'
export {
  DISALLOWED_HANDLE_TLDS,
  ensureValidAtIdentifier,
  ensureValidDid,
  ensureValidHandle,
  ensureValidNsid,
  ensureValidRecordKey,
  ensureValidTid,
  isAllowedHandleTld,
  isValidAtIdentifier,
  isValidDid,
  isValidHandle,
  isValidNsid,
  isValidRecordKey,
  isValidTid,
  normalizeAndEnsureValidHandle,
  normalizeHandle,
} from './identifiers.js'
export { type AtUriParts, MAX_AT_URI_LENGTH, ensureValidAtUri, isValidAtUri, parseAtUri } from './aturi.js'
export {
  ensureValidDatetime,
  isValidDatetime,
  isValidDatetimeSyntax,
  normalizeDatetime,
  parseDatetime,
  toDatetimeString,
} from './datetime.js'
export {
  type LanguageTag,
  ensureParsedLanguage,
  ensureValidLanguage,
  isValidLanguage,
  parseLanguage,
} from './language.js'
export {
  MAX_URI_LENGTH,
  ensureValidCidString,
  ensureValidUri,
  isValidCidString,
  isValidUri,
} from './misc.js'
export { TidClock, compareTids, nextTid, tidClockId, tidFromTime, tidToTimestampUs } from './tid.js'
