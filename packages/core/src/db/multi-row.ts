/**
 * One SQL statement for many rows (`INSERT ... VALUES (?, ?), (?, ?), ...`) on better-sqlite3, instead of
 * one statement run per row: the rows of a batch are written by a few calls into SQLite rather than one
 * per row. The statements are prepared once per row count (up to `maxRows`) and reused.
 */
import type SqliteDatabase from 'better-sqlite3'

export class MultiRowStatement {
  private readonly stmts = new Map<number, SqliteDatabase.Statement>()
  private readonly rowSql: string

  /**
   * `head` + ` VALUES ` + `(?, ...)` × rows + ` ` + `tail`: e.g. head `INSERT INTO t (a, b)`, 2 columns,
   * tail `ON CONFLICT (a) DO UPDATE SET b = excluded.b`. `maxRows` × `columns` must stay within SQLite's
   * bound on parameters (32,766).
   */
  constructor(
    private readonly db: SqliteDatabase.Database,
    private readonly head: string,
    readonly columns: number,
    private readonly tail = '',
    readonly maxRows = 100,
  ) {
    if (!Number.isInteger(columns) || columns < 1) throw new RangeError(`invalid column count: ${columns}`)
    if (!Number.isInteger(maxRows) || maxRows < 1 || maxRows * columns > 32_766) throw new RangeError(`invalid row bound: ${maxRows}`)
    this.rowSql = `(${new Array<string>(columns).fill('?').join(', ')})`
  }

  /** Runs the statement over `params`: the rows' values one row after the other (a multiple of `columns`). */
  run(params: readonly unknown[]): void {
    const n = params.length / this.columns
    if (!Number.isInteger(n)) throw new RangeError(`${params.length} values are not rows of ${this.columns}`)
    for (let row = 0; row < n; row += this.maxRows) {
      const rows = Math.min(this.maxRows, n - row)
      const values = row === 0 && rows === n ? params : params.slice(row * this.columns, (row + rows) * this.columns)
      this.statement(rows).run(values)
    }
  }

  private statement(rows: number): SqliteDatabase.Statement {
    let stmt = this.stmts.get(rows)
    if (!stmt) {
      const sql = `${this.head} VALUES ${new Array<string>(rows).fill(this.rowSql).join(', ')}${this.tail ? ` ${this.tail}` : ''}`
      stmt = this.db.prepare(sql)
      this.stmts.set(rows, stmt)
    }
    return stmt
  }
}
