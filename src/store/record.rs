//! Generic row mapping and CRUD for registry tables.
//!
//! Each registry entity describes its table once (name, key, columns, how to bind and read
//! a row); the generic functions here then give every entity the same insert, update,
//! delete, get and keyset-paginated list, so the SQL for those operations exists in one place.

use super::StoreError;
use sqlx::any::{AnyArguments, AnyRow};
use sqlx::query::Query;
use sqlx::{Any, AnyConnection, Row};

/// A value bound to a statement parameter. The `Any` driver maps these to the same column
/// types on SQLite and PostgreSQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Text(Option<String>),
    Int(Option<i64>),
    Float(Option<f64>),
}

impl Value {
    /// Binds this value as the next parameter of `q`.
    pub fn bind_to<'q>(self, q: Query<'q, Any, AnyArguments>) -> Query<'q, Any, AnyArguments> {
        match self {
            Value::Text(v) => q.bind(v),
            Value::Int(v) => q.bind(v),
            // sqlx 0.9's Any driver swaps the PostgreSQL types of typed NULLs (a NULL f64 is
            // sent as float4 and a NULL f32 as float8). The prepared statement then keeps the
            // float4 parameter type and a later non-NULL f64 fails to bind. Binding a NULL
            // "f32" yields the float8 NULL that the DOUBLE PRECISION columns need.
            Value::Float(None) => q.bind(None::<f32>),
            Value::Float(Some(v)) => q.bind(v),
        }
    }
}

impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Value::Text(Some(s.to_string()))
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Text(Some(s))
    }
}
impl From<Option<String>> for Value {
    fn from(s: Option<String>) -> Self {
        Value::Text(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Value::Int(Some(v))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Value::Float(Some(v))
    }
}
impl From<Option<f64>> for Value {
    fn from(v: Option<f64>) -> Self {
        Value::Float(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Value::Int(Some(v as i64))
    }
}

/// A type stored as one row of one table.
pub trait Record: Sized + Send + Sync + Unpin + 'static {
    /// Table name.
    const TABLE: &'static str;
    /// Primary-key column (a text key).
    const KEY: &'static str;
    /// All columns, key first, in the order [`Record::values`] produces them.
    const COLUMNS: &'static [&'static str];

    /// The primary-key value.
    fn key(&self) -> &str;
    /// Column values in [`Record::COLUMNS`] order.
    fn values(&self) -> Vec<Value>;
    /// [`Record::values`], consuming the record (types on bulk paths move their strings
    /// instead of copying them).
    fn into_values(self) -> Vec<Value> {
        self.values()
    }
    /// Reads a row selected with [`Record::COLUMNS`].
    fn from_row(row: &AnyRow) -> Result<Self, StoreError>;
}

/// Builds a query from SQL assembled at run time. Every such string in this module is made
/// only of table and column names from [`Record`] constants and numbered placeholders; user
/// data always travels as bound parameters.
pub fn dynamic<'q>(sql: String) -> Query<'q, Any, AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql))
}

fn select_list<R: Record>() -> String {
    R::COLUMNS.join(", ")
}

fn bind_all<'q>(
    mut q: Query<'q, Any, AnyArguments>,
    values: Vec<Value>,
) -> Query<'q, Any, AnyArguments> {
    for v in values {
        q = v.bind_to(q);
    }
    q
}

/// Inserts `rec` as a new row.
pub async fn insert<R: Record>(conn: &mut AnyConnection, rec: &R) -> Result<(), StoreError> {
    let placeholders: Vec<String> = (1..=R::COLUMNS.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "INSERT INTO {} ({}) VALUES ({})",
        R::TABLE,
        select_list::<R>(),
        placeholders.join(", ")
    );
    bind_all(dynamic(sql), rec.values())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Inserts many records with multi-row statements, which is what makes bulk import fast:
/// one round trip per chunk instead of one per row.
pub async fn insert_many<R: Record>(
    conn: &mut AnyConnection,
    recs: &[R],
) -> Result<(), StoreError> {
    let rows = recs.iter().map(Record::values).collect();
    insert_rows(conn, R::TABLE, R::COLUMNS, rows).await
}

/// [`insert_many`] for records the caller is done with.
pub async fn insert_many_owned<R: Record>(
    conn: &mut AnyConnection,
    recs: Vec<R>,
) -> Result<(), StoreError> {
    let rows = recs.into_iter().map(Record::into_values).collect();
    insert_rows(conn, R::TABLE, R::COLUMNS, rows).await
}

/// Inserts rows of `columns` into `table` with multi-row statements. For tables without a
/// [`Record`] type (link tables such as `group_members`); each row must hold one value per
/// column, in order. `table` and `columns` are spliced into SQL: pass constants, never
/// input.
pub async fn insert_rows(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[&str],
    rows: Vec<Vec<Value>>,
) -> Result<(), StoreError> {
    // SQLite's default limit is 32766 bound parameters per statement.
    let per_row = columns.len();
    let chunk_rows = (30_000 / per_row).clamp(1, 1000);
    // To SQLite a `$n` placeholder is a *named* parameter, and binding one looks its name
    // up in a list: quadratic in the parameter count, which made 1000-row statements slower
    // than single-row ones (docs/benchmarks.md). Anonymous `?` placeholders bind by
    // position. PostgreSQL only understands `$n`.
    let anonymous = conn.backend_name() == "SQLite";
    let mut remaining = rows.len();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let n_rows = remaining.min(chunk_rows);
        remaining -= n_rows;
        let mut sql = format!("INSERT INTO {table} ({}) VALUES ", columns.join(", "));
        let mut n = 0;
        for i in 0..n_rows {
            if i > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..per_row {
                if c > 0 {
                    sql.push_str(", ");
                }
                n += 1;
                if anonymous {
                    sql.push('?');
                } else {
                    sql.push('$');
                    sql.push_str(&n.to_string());
                }
            }
            sql.push(')');
        }
        let mut q = dynamic(sql);
        for values in rows.by_ref().take(n_rows) {
            debug_assert_eq!(values.len(), per_row);
            q = bind_all(q, values);
        }
        q.execute(&mut *conn).await?;
    }
    Ok(())
}

/// Overwrites the row whose key equals `rec.key()`. Returns false when no row matched.
pub async fn update<R: Record>(conn: &mut AnyConnection, rec: &R) -> Result<bool, StoreError> {
    let sets: Vec<String> = R::COLUMNS
        .iter()
        .enumerate()
        .skip(1)
        .map(|(i, c)| format!("{c} = ${}", i + 1))
        .collect();
    let sql = format!(
        "UPDATE {} SET {} WHERE {} = $1",
        R::TABLE,
        sets.join(", "),
        R::KEY
    );
    let res = bind_all(dynamic(sql), rec.values())
        .execute(&mut *conn)
        .await?;
    Ok(res.rows_affected() == 1)
}

/// Deletes the row with `key`. Returns false when there was none.
pub async fn delete<R: Record>(conn: &mut AnyConnection, key: &str) -> Result<bool, StoreError> {
    let sql = format!("DELETE FROM {} WHERE {} = $1", R::TABLE, R::KEY);
    let res = dynamic(sql).bind(key).execute(&mut *conn).await?;
    Ok(res.rows_affected() == 1)
}

/// Reads the row with `key`.
pub async fn get<R: Record>(conn: &mut AnyConnection, key: &str) -> Result<Option<R>, StoreError> {
    let sql = format!(
        "SELECT {} FROM {} WHERE {} = $1",
        select_list::<R>(),
        R::TABLE,
        R::KEY
    );
    let row = dynamic(sql).bind(key).fetch_optional(&mut *conn).await?;
    row.as_ref().map(R::from_row).transpose()
}

/// Lists rows matching all `filters` (column = value), ordered by key, starting after the
/// key `after` (keyset pagination stays fast at any depth, unlike OFFSET).
pub async fn list<R: Record>(
    conn: &mut AnyConnection,
    filters: &[(&str, Value)],
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<R>, StoreError> {
    let mut sql = format!("SELECT {} FROM {}", select_list::<R>(), R::TABLE);
    let mut clauses = Vec::new();
    let mut n = 0;
    for (col, _) in filters {
        n += 1;
        clauses.push(format!("{col} = ${n}"));
    }
    if after.is_some() {
        n += 1;
        clauses.push(format!("{} > ${n}", R::KEY));
    }
    if !clauses.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&clauses.join(" AND "));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {}", R::KEY, limit));
    let mut q = dynamic(sql);
    for (_, v) in filters {
        q = v.clone().bind_to(q);
    }
    if let Some(a) = after {
        q = q.bind(a.to_string());
    }
    let rows = q.fetch_all(&mut *conn).await?;
    rows.iter().map(R::from_row).collect()
}

/// True when `table` has a row whose `columns` equal `values`, ignoring the row whose
/// `key_column` equals the given key (so an update does not collide with itself).
pub async fn exists(
    conn: &mut AnyConnection,
    table: &str,
    columns: &[(&str, Value)],
    except: Option<(&str, &str)>,
) -> Result<bool, StoreError> {
    let mut clauses: Vec<String> = columns
        .iter()
        .enumerate()
        .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
        .collect();
    if let Some((key_col, _)) = except {
        clauses.push(format!("{key_col} <> ${}", columns.len() + 1));
    }
    let sql = format!(
        "SELECT 1 FROM {table} WHERE {} LIMIT 1",
        clauses.join(" AND ")
    );
    let mut q = dynamic(sql);
    for (_, v) in columns {
        q = v.clone().bind_to(q);
    }
    if let Some((_, key)) = except {
        q = q.bind(key.to_string());
    }
    Ok(q.fetch_optional(&mut *conn).await?.is_some())
}

/// Reads an optional text column.
pub fn opt_text(row: &AnyRow, col: &str) -> Result<Option<String>, StoreError> {
    Ok(row.try_get::<Option<String>, _>(col)?)
}

/// Reads a required text column.
pub fn text(row: &AnyRow, col: &str) -> Result<String, StoreError> {
    Ok(row.try_get::<String, _>(col)?)
}

/// Reads a required integer column.
pub fn int(row: &AnyRow, col: &str) -> Result<i64, StoreError> {
    Ok(row.try_get::<i64, _>(col)?)
}

/// Reads an optional float column.
pub fn opt_float(row: &AnyRow, col: &str) -> Result<Option<f64>, StoreError> {
    Ok(row.try_get::<Option<f64>, _>(col)?)
}

/// Reads a required float column.
pub fn float(row: &AnyRow, col: &str) -> Result<f64, StoreError> {
    Ok(row.try_get::<f64, _>(col)?)
}

/// Reads a text column holding one of a closed set of names.
pub fn parsed<T: std::str::FromStr>(row: &AnyRow, col: &str) -> Result<T, StoreError>
where
    T::Err: std::fmt::Display,
{
    let s = text(row, col)?;
    s.parse()
        .map_err(|e: T::Err| StoreError::Corrupt(format!("{col}: {e}")))
}
