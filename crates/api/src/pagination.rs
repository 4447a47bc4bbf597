//! Cursor pagination: ids sort by creation time, so the cursor is the last id seen and
//! every list has a stable order that inserts never reshuffle.

use axum::http::StatusCode;

use crate::ApiError;

/// `?limit=&cursor=`
#[derive(Debug, Clone, Default, serde::Deserialize)]
pub(crate) struct PageQuery {
    /// Items per page, 1 to 200 (default 50).
    pub limit: Option<i64>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
}

/// A page of results.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub(crate) struct Page<T> {
    /// The items, oldest first.
    pub data: Vec<T>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

impl PageQuery {
    /// The validated limit.
    pub(crate) fn limit(&self) -> Result<i64, ApiError> {
        match self.limit {
            None => Ok(50),
            Some(limit @ 1..=200) => Ok(limit),
            Some(_) => {
                Err(ApiError::field(StatusCode::BAD_REQUEST, "invalid_limit", "limit", "limit must be 1 to 200"))
            }
        }
    }

    /// The id after which the page starts ("" for the first page); 400 for a cursor
    /// that no page gave.
    pub(crate) fn after(&self) -> Result<&str, ApiError> {
        Ok(checked_cursor(self.cursor.as_deref())?.unwrap_or(""))
    }
}

/// A cursor as pages give them (an id: letters, digits and `_`, at most 64), or 400
/// `invalid_cursor`: one that is not would otherwise quietly start another page.
pub(crate) fn checked_cursor(cursor: Option<&str>) -> Result<Option<&str>, ApiError> {
    match cursor {
        Some(cursor)
            if cursor.is_empty()
                || cursor.len() > 64
                || !cursor.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') =>
        {
            Err(ApiError::field(
                StatusCode::BAD_REQUEST,
                "invalid_cursor",
                "cursor",
                "cursor must be the next_cursor of a previous page",
            ))
        }
        other => Ok(other),
    }
}

/// Builds a page from up to `limit + 1` fetched items.
pub(crate) fn page<T>(mut items: Vec<T>, limit: i64, id_of: impl Fn(&T) -> String) -> Page<T> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let next_cursor = if items.len() > limit {
        items.truncate(limit);
        items.last().map(&id_of)
    } else {
        None
    };
    Page { data: items, next_cursor }
}
