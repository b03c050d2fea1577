/** did:plc operation shapes (spec v0.3.0). All are plain JSON objects. */

export interface PlcService {
  type: string
  endpoint: string
}

/** A regular genesis or update operation. `prev` is null only for a genesis operation. */
export interface PlcOperation {
  type: 'plc_operation'
  rotationKeys: string[]
  verificationMethods: Record<string, string>
  alsoKnownAs: string[]
  services: Record<string, PlcService>
  prev: string | null
  sig: string
}

/** Permanently deactivates the DID (may still be nullified within the recovery window). */
export interface PlcTombstone {
  type: 'plc_tombstone'
  prev: string
  sig: string
}

/** Deprecated genesis format, still found in historical logs. */
export interface LegacyCreateOp {
  type: 'create'
  signingKey: string
  recoveryKey: string
  handle: string
  service: string
  prev: null
  sig: string
}

export type CompatibleOp = PlcOperation | LegacyCreateOp
export type AnyPlcOp = PlcOperation | PlcTombstone | LegacyCreateOp

export type UnsignedPlcOperation = Omit<PlcOperation, 'sig'>

/** One entry of a DID's audit log, in the order the directory accepted them. */
export interface LogEntry {
  cid: string
  operation: AnyPlcOp
  nullified: boolean
  createdAt: Date | string
}

/** An audit-log entry as served at `/:did/log/audit` and in the legacy `/export` format. */
export interface ExportedLogEntry {
  did: string
  operation: AnyPlcOp
  cid: string
  nullified: boolean
  createdAt: string
}

/** The current state of a DID (`/:did/data`). */
export interface DocumentData {
  did: string
  rotationKeys: string[]
  verificationMethods: Record<string, string>
  alsoKnownAs: string[]
  services: Record<string, PlcService>
}

export interface DidDocument {
  '@context': string[]
  id: string
  alsoKnownAs: string[]
  verificationMethod: { id: string; type: string; controller: string; publicKeyMultibase: string }[]
  service: { id: string; type: string; serviceEndpoint: string }[]
}
