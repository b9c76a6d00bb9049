//! The two SQL dialects of the store. Every statement is written once, in SQLite's flavour
//! (the dialect the schema was born in and the benchmarks measure), and [`Dialect::sql`]
//! rewrites it for PostgreSQL: `?` → `$n`, `INSERT OR IGNORE` → `… ON CONFLICT DO NOTHING`,
//! no `INDEXED BY`, `json_each(?)` → `unnest($n)`. What no rewrite can express (PRAGMAs,
//! the chain's lock, the claim's `FOR UPDATE SKIP LOCKED`) is chosen per dialect where it
//! is used.

use std::borrow::Cow;

/// Which database a store (or a transaction) speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// `sql` (SQLite-flavoured) as this dialect runs it. SQLite's is returned untouched.
    pub fn sql<'a>(self, sql: &'a str) -> Cow<'a, str> {
        match self {
            Dialect::Sqlite => Cow::Borrowed(sql),
            Dialect::Postgres => Cow::Owned(to_postgres(sql)),
        }
    }

    /// `sqlite` or `postgres` as the dialect needs it, for the few statements that differ
    /// by more than a rewrite.
    pub fn pick<'a>(self, sqlite: &'a str, postgres: &'a str) -> &'a str {
        match self {
            Dialect::Sqlite => sqlite,
            Dialect::Postgres => postgres,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Sqlite => "SQLite",
            Dialect::Postgres => "PostgreSQL",
        }
    }
}

fn to_postgres(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 32);
    let mut n = 0usize;
    let mut in_str = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_str = !in_str;
                out.push(c);
            }
            '?' if !in_str => {
                n += 1;
                out.push('$');
                out.push_str(itoa::Buffer::new().format(n));
            }
            _ => out.push(c),
        }
    }
    let mut out = drop_indexed_by(&out);
    // `json_each(?)` lists ids or codes as a JSON text on SQLite; PostgreSQL takes the array
    // itself (see [`List`]), under the column name SQLite's table-valued function has.
    while let Some(at) = out.find("json_each($") {
        let end = out[at..].find(')').map(|e| at + e + 1).expect("json_each( is closed");
        let param = out[at + "json_each(".len()..end - 1].to_string();
        out.replace_range(at..end, &format!("unnest({param}) AS json_each(value)"));
    }
    if let Some(rest) = strip_prefix_ci(out.trim_start(), "INSERT OR IGNORE INTO") {
        let mut s = format!("INSERT INTO{rest}");
        match rfind_ci(&s, " RETURNING ") {
            Some(at) => s.insert_str(at, " ON CONFLICT DO NOTHING"),
            None => s.push_str(" ON CONFLICT DO NOTHING"),
        }
        out = s;
    }
    out
}

/// Remove every `INDEXED BY <index>`: SQLite's guard against a plan falling back to a scan;
/// PostgreSQL's planner picks the partial index by itself.
fn drop_indexed_by(sql: &str) -> String {
    let mut out = sql.to_string();
    while let Some(at) = find_ci(&out, "INDEXED BY ") {
        let name_start = at + "INDEXED BY ".len();
        let name_end = out[name_start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map(|e| name_start + e)
            .unwrap_or(out.len());
        // Drop the space before it too.
        let start = if at > 0 && out.as_bytes()[at - 1] == b' ' { at - 1 } else { at };
        out.replace_range(start..name_end, "");
    }
    out
}

fn find_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_uppercase().find(needle)
}

fn rfind_ci(hay: &str, needle: &str) -> Option<usize> {
    hay.to_ascii_uppercase().rfind(needle)
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    (s.len() >= prefix.len() && s[..prefix.len()].eq_ignore_ascii_case(prefix)).then(|| &s[prefix.len()..])
}

/// A list bound as one parameter, for `IN (SELECT value FROM json_each(?))`: a JSON array
/// in a text on SQLite (which has no arrays), the array itself on PostgreSQL.
#[derive(Debug, Clone, Copy)]
pub struct List<'a, T>(pub &'a [T]);

impl<T: serde::Serialize> List<'_, T> {
    fn json(&self) -> String {
        serde_json::to_string(self.0).expect("a list of ids or codes serializes")
    }
}

impl<T> sqlx::Type<sqlx::Sqlite> for List<'_, T> {
    fn type_info() -> sqlx::sqlite::SqliteTypeInfo {
        <String as sqlx::Type<sqlx::Sqlite>>::type_info()
    }
}

impl<'q, T: serde::Serialize> sqlx::Encode<'q, sqlx::Sqlite> for List<'_, T> {
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Sqlite as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, sqlx::Sqlite>>::encode(self.json(), buf)
    }
}

impl<T: sqlx::postgres::PgHasArrayType> sqlx::Type<sqlx::Postgres> for List<'_, T> {
    fn type_info() -> sqlx::postgres::PgTypeInfo {
        T::array_type_info()
    }
}

impl<'q, T> sqlx::Encode<'q, sqlx::Postgres> for List<'_, T>
where
    T: sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    fn encode_by_ref(
        &self,
        buf: &mut <sqlx::Postgres as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <&[T] as sqlx::Encode<'q, sqlx::Postgres>>::encode_by_ref(&self.0, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::Dialect::{Postgres, Sqlite};

    #[test]
    fn sqlite_is_untouched() {
        let q = "INSERT OR IGNORE INTO m (a) VALUES (?) RETURNING a";
        assert_eq!(Sqlite.sql(q), q);
    }

    #[test]
    fn placeholders_are_numbered_outside_literals() {
        assert_eq!(
            Postgres.sql("SELECT a FROM t WHERE b = ? AND c = '?' AND d IN (?, ?)"),
            "SELECT a FROM t WHERE b = $1 AND c = '?' AND d IN ($2, $3)"
        );
    }

    #[test]
    fn insert_or_ignore_becomes_on_conflict() {
        assert_eq!(
            Postgres.sql("INSERT OR IGNORE INTO m (a) VALUES (?)"),
            "INSERT INTO m (a) VALUES ($1) ON CONFLICT DO NOTHING"
        );
        assert_eq!(
            Postgres.sql("INSERT OR IGNORE INTO m (a) VALUES (?), (?) RETURNING a"),
            "INSERT INTO m (a) VALUES ($1), ($2) ON CONFLICT DO NOTHING RETURNING a"
        );
    }

    #[test]
    fn indexed_by_and_json_each() {
        assert_eq!(
            Postgres.sql("SELECT id FROM deliveries INDEXED BY deliveries_heads\n WHERE sink = ?"),
            "SELECT id FROM deliveries\n WHERE sink = $1"
        );
        assert_eq!(
            Postgres.sql("UPDATE s SET x = ? WHERE id IN (SELECT value FROM json_each(?))"),
            "UPDATE s SET x = $1 WHERE id IN (SELECT value FROM unnest($2) AS json_each(value))"
        );
    }
}
