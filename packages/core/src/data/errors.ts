/** Thrown for anything outside the atproto data model (floats, bad $link/$bytes/blob, bad CBOR...). */
export class DataModelError extends Error {
  override name = 'DataModelError'
}

/** The bytes end inside a CBOR item: the input was cut short (a truncated frame or block). */
export class CborTruncatedError extends DataModelError {
  override name = 'CborTruncatedError'
}
