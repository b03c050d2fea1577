/** Thrown for anything outside the atproto data model (floats, bad $link/$bytes/blob, bad CBOR...). */
export class DataModelError extends Error {
  override name = 'DataModelError'
}
