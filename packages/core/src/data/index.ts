export { CID } from 'multiformats/cid'
export { CborTruncatedError, DataModelError } from './errors.js'
export {
  DAG_CBOR_CODEC,
  DEFAULT_MAX_DEPTH,
  RAW_CODEC,
  SHA256_CODE,
  type CborLimits,
  cborDecode,
  cborDecodeFirst,
  cborDecodeMulti,
  cborEncode,
  cidForBlock,
  cidForCbor,
  cidForRawBytes,
  encodeBlock,
  isBlessedCid,
  verifyCidForBytes,
} from './cbor.js'
export { cidString } from './cid-string.js'
export { scanCborItem, scanCborItemStrict, type CidCheck } from './cbor-scan.js'
export { cborCidLength, cborHeadLength, writeCborCid, writeCborHead } from './cbor-head.js'
export {
  decodeBase64,
  encodeBase64,
  isValidDataModelJson,
  jsonToLex,
  jsonValueToLex,
  lexToJson,
  validateDataModelJson,
} from './json.js'
export {
  type BlobRef,
  type BlobRefJson,
  type LegacyBlobRef,
  blobCid,
  blobRef,
  blobRefJson,
  isBlobRef,
  isLegacyBlobRef,
} from './blob.js'
