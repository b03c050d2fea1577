export { Lexicons, BlobRef, jsonToLex, lexToJson, type LexiconDoc } from '@atproto/lexicon'
export { LexiconDocError, isValidLexiconDoc, isValidRecordKeyType, parseLexicon } from './doc.js'
export {
  API_NAMESPACES,
  apiLexiconDocs,
  createLexicons,
  defaultLexiconDir,
  lexicons,
  loadLexiconDir,
  type CreateLexiconsOptions,
} from './registry.js'
export { checkBlobConstraints, mimeMatches, normalizeLexUri } from './blob-constraints.js'
export {
  LexiconValidationError,
  assertValidRecord,
  checkRecordKey,
  coerceParams,
  encodingMatches,
  getMethodDef,
  isJsonEncoding,
  toLexValue,
  validateInput,
  validateOutput,
  validateParams,
  validateRecord,
  type MethodDef,
  type RecordValidationOptions,
  type RecordValidationResult,
} from './validate.js'
