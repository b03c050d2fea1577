export {
  type Curve,
  type JwtAlg,
  type ParsedPublicKey,
  DID_KEY_PREFIX,
  InvalidKeyError,
  LEGACY_SUITES,
  compressPublicKey,
  curveToJwtAlg,
  decompressPublicKey,
  didKeyFromVerificationMethod,
  formatDidKey,
  formatMultikey,
  jwtAlgToCurve,
  parseDidKey,
  parseLegacyMultibase,
  parseMultikey,
} from './keys.js'
export {
  clearVerifyCache,
  isLowS,
  k256Backend,
  setVerifyCacheSize,
  sha256,
  verifySignature,
  verifySignatureWithKey,
} from './verify.js'
export { sha256Into } from './sha256.js'
export { type SigningKeypair, generateKeypair, importKeypair } from './keypair.js'
